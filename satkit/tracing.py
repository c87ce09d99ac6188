"""OpenTelemetry traces across the mesh, exported over OTLP/gRPC.

On when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and
OTEL_SDK_DISABLED is not; the SDK reads the other standard variables itself (OTEL_TRACES_SAMPLER
and _ARG for sampling, OTEL_EXPORTER_OTLP_HEADERS, _INSECURE, _CERTIFICATE, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*). Off, the services test ``enabled()`` and do nothing else:
no SDK is loaded and no span is made.

A job's trace context travels as a W3C ``traceparent`` string: in the caller's gRPC metadata, in
the internal messages (Submission, TaskJob, JobOutcome), in the job's row, and in the Celery
message's headers. Spans are made with explicit parents and times, because one call carries many
jobs, each of its own trace: a span of a batch links the jobs it carries.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence

from satkit.settings import OTEL_DISABLED, OTEL_ENDPOINT, OTEL_TRACES_ENDPOINT

log = logging.getLogger(__name__)
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_tracer = None
_provider = None
_api = None  # opentelemetry.trace, once set up


def enabled() -> bool:
    return _tracer is not None


def configured() -> bool:
    return bool(OTEL_ENDPOINT.read() or OTEL_TRACES_ENDPOINT.read()) and not OTEL_DISABLED.read()


def setup(service: str) -> bool:
    """Once per process (for a forking server: in each child, after the fork). True when on."""
    global _tracer, _provider, _api
    if _tracer is not None or not configured():
        return _tracer is not None
    import opentelemetry.trace as api
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider, sampling
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class KeepLinked(sampling.Sampler):
        """The configured sampler (OTEL_TRACES_SAMPLER), except that a new trace linked to a kept
        one is kept: a batch span (a Celery message, a re-queued one) exists when a job it carries
        is sampled, and its children follow it, whatever the ratio."""

        def __init__(self, base):
            self.base = base

        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            parent = api.get_current_span(parent_context).get_span_context()
            if not parent.is_valid and any(link.context.trace_flags.sampled for link in links or ()):
                return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, attributes)
            return self.base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"KeepLinked{{{self.base.get_description()}}}"

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME, when set, wins over ours.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}),
                              sampler=KeepLinked(sampling._get_from_env_or_default()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer, _provider, _api = provider.get_tracer("satlas"), provider, api
    log.info("tracing on: spans of %s go to %s", service, OTEL_TRACES_ENDPOINT.read() or OTEL_ENDPOINT.read())
    return True


def shutdown() -> None:
    """Sends what is buffered (a process that stops would lose its last spans)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = None, None


def valid(traceparent: str) -> str:
    """``traceparent`` if it is a W3C one (version 00, ids not all zero), else ""."""
    m = TRACEPARENT.fullmatch(traceparent or "")
    return traceparent if m and m.group(1).strip("0") and m.group(2).strip("0") else ""


def sampled(traceparent: str | None) -> bool:
    """The traceparent's sampled flag. Spans under an unsampled one are never kept (the parent-based
    samplers), so the services make none and pass the parent's on: tracing costs in proportion
    to the share of jobs sampled."""
    return bool(traceparent) and len(traceparent) == 55 and int(traceparent[-2:], 16) & 1 == 1


def trace_id(traceparent: str | None) -> str:
    """The trace id in a traceparent ("" for none)."""
    return traceparent[3:35] if traceparent and len(traceparent) >= 35 else ""


def incoming(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's traceparent from gRPC metadata ("" when it sent none or a malformed one)."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            return valid(value.strip())
    return ""


def _span_context(traceparent: str):
    m = TRACEPARENT.fullmatch(traceparent or "")
    return _api.SpanContext(int(m.group(1), 16), int(m.group(2), 16), is_remote=True,
                            trace_flags=_api.TraceFlags(int(m.group(3), 16))) if m else None


def _context(traceparent: str):
    parent = _span_context(traceparent)
    return _api.set_span_in_context(_api.NonRecordingSpan(parent)) if parent else None  # None: a new trace


def start(name: str, parent: str = "", kind: str = "internal", attributes: dict | None = None,
          links: Iterable[str] = (), start_ns: int | None = None):
    """A span under ``parent`` (a traceparent; "" starts a trace), linked to ``links`` (traceparents).
    Call only when ``enabled()``; end it with ``finish``."""
    return _tracer.start_span(name, context=_context(parent), kind=_api.SpanKind[kind.upper()],
                              attributes=attributes, start_time=start_ns,
                              links=[_api.Link(c) for c in map(_span_context, links) if c is not None])


def finish(span, code: str = "OK", attributes: dict | None = None, end_ns: int | None = None) -> None:
    """End ``span`` with the gRPC status code of what it did (an error unless OK)."""
    if not span.is_recording():  # dropped by the sampler
        span.end(end_ns)
        return
    if attributes:
        span.set_attributes(attributes)
    span.set_attribute("satlas.status", code)
    if code != "OK":
        span.set_status(_api.Status(_api.StatusCode.ERROR, code))
    span.end(end_ns)


def traceparent_of(span) -> str:
    """The W3C traceparent of ``span``, for its children elsewhere. A span the sampler dropped has
    one too, flagged unsampled: its children are dropped as well, and the job keeps a trace id."""
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}" if c.is_valid else ""


def now_ns() -> int:
    return time.time_ns()

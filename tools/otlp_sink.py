"""A minimal OTLP/gRPC trace receiver: keeps what the services export, for the tests and the
tracing benchmark, and prints one line per span when run by hand:

    python -m tools.otlp_sink --port 4317     # then OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 make up

For real use point OTEL_EXPORTER_OTLP_ENDPOINT at an OpenTelemetry Collector, Jaeger or Tempo.
"""

from __future__ import annotations

import argparse
import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    start_ns: int
    end_ns: int
    error: bool


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def spans_of(request: pb.ExportTraceServiceRequest) -> list[Span]:
    out = []
    for rs in request.resource_spans:
        service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(Span(service, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                                {a.key: _value(a.value) for a in s.attributes},
                                tuple((k.trace_id.hex(), k.span_id.hex()) for k in s.links),
                                s.start_time_unix_nano, s.end_time_unix_nano, s.status.code == 2))
    return out


@dataclass
class Sink(pb_grpc.TraceServiceServicer):
    spans: list[Span] = field(default_factory=list)
    on_span: object = None
    keep: bool = True  # False: count them only (the benchmark: a collector's cost, not a test's)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0
        self.count = 0

    def Export(self, request, context):
        if not self.keep:
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.count += n
            return pb.ExportTraceServiceResponse()
        got = spans_of(request)
        with self._lock:
            self.spans.extend(got)
            self.count += len(got)
        for s in got:
            if self.on_span:
                self.on_span(s)
        return pb.ExportTraceServiceResponse()

    def start(self, port: int = 0, host: str = "127.0.0.1") -> Sink:
        self._server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_receive_message_length",
                                                                           64 * 1024 * 1024)])
        pb_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self._server.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def taken(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def traces(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for s in self.taken():
            out.setdefault(s.trace_id, []).append(s)
        return out

    def stop(self) -> None:
        if self._server:
            self._server.stop(1).wait()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4317)
    args = parser.parse_args()

    def show(s: Span) -> None:
        job = s.attributes.get("satlas.job_id") or s.attributes.get("satlas.job_ids") or ""
        print(f"{s.trace_id} {s.service:<16} {s.name:<22} {(s.end_ns - s.start_ns) / 1e6:8.2f} ms "
              f"{'ERROR ' if s.error else ''}{job}", flush=True)

    sink = Sink(on_span=show).start(args.port)
    print(f"OTLP/gRPC traces on {sink.endpoint}; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main()

"""IngestService: validate, admit, batch into the orchestrator, return job ids."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math

import grpc
import numpy as np
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import ingest_service_pb2 as pb
from satlas.v1 import ingest_service_pb2_grpc as pb_grpc

from ingest_svc import metrics
from ingest_svc.batcher import Batcher, Overloaded
from ingest_svc.models import ModelDirectory
from ingest_svc.quota import Quota, token_key
from satkit import tracing
from satkit.jobs import horizon_problem
from satkit.validation import Malformed, Violation, abort_invalid, describe, violations

log = logging.getLogger(__name__)
STREAM_WINDOW = 1024  # StreamSeries requests in flight per stream before reading pauses


class Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, found: list[Violation] | None = None):
        super().__init__(message)
        self.code, self.message, self.violations = code, message, found or []


class Ingest(pb_grpc.IngestServiceServicer):
    def __init__(self, batcher: Batcher, models: ModelDirectory, quota: Quota | None = None):
        self.batcher = batcher
        self.models = models
        self.quota = quota or Quota(0, 0)
        metrics.watch(batcher)

    async def _served(self, models) -> dict:
        try:
            return await self.models.get(models)
        except grpc.aio.AioRpcError as exc:
            raise Rejected(grpc.StatusCode.UNAVAILABLE, f"model list unavailable: {exc.code().name}") from exc

    def _take_quota(self, token: str | None, jobs: int) -> None:
        wait = self.quota.take(token, jobs)
        if wait == math.inf:
            raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"this call's {jobs} jobs are more than this token's burst of {self.quota.burst:g} "
                           f"(INGEST_QUOTA_BURST): send them in smaller calls")
        if wait:
            raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"this token's quota of {self.quota.rate:g} jobs/s is spent; retry in {wait:.2f} s")

    async def _admit(self, requests: list[pb.SubmitSeriesRequest], time_remaining: float | None,
                     token: str | None = None, traceparent: str = "", *, batch: bool = False) -> asyncio.Future:
        """Check valid requests against the served models and the token's quota, and queue them, all
        or none; raises Rejected. A future of the job ids of the one request, or with ``batch`` (a
        BatchSubmitSeries call, its violations named ``requests[i].``) of each request's."""
        served = await self._served({m for r in requests for m in r.models} if batch else requests[0].models)
        found = [(f"requests[{i}].{f}" if batch else f, d) for i, r in enumerate(requests) for f, d in unfit(r, served)]
        if found:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, describe(found), found)
        jobs = sum(len(r.models) for r in requests)
        self._take_quota(token, jobs)
        submissions = [_submission(r, traceparent) for r in requests]
        try:
            if batch:
                return self.batcher.submit_all(submissions, time_remaining)
            return self.batcher.submit(submissions[0], time_remaining)
        except Overloaded as exc:
            self.quota.give_back(token, jobs)
            raise _overloaded(exc) from exc

    async def _unary(self, context, span, created):
        """What ``created`` (a coroutine: checks, admission, the jobs' creation) returns; a refusal or
        a failed CreateJobs becomes the call's status, counted and its span ended."""
        try:
            return await created
        except Rejected as r:
            _answered(r.code.name, span)
            if r.violations:
                await abort_invalid(context, r.violations)
            await context.abort(r.code, r.message)
        except grpc.aio.AioRpcError as exc:
            _answered(passed_on(exc).name, span)
            await context.abort(passed_on(exc), f"orchestrator: {exc.code().name}: {exc.details()}")
        except BaseException as exc:  # the caller went away (cancelled), or a fault: counted and the span ended
            _answered("CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN", span)
            raise

    async def SubmitSeries(self, request, context):
        metadata = context.invocation_metadata()
        span, traceparent = _traced(tracing.incoming(metadata), request)

        async def created():
            return await (await self._admit([request], context.time_remaining(), token_key(metadata), traceparent))

        job_ids = await self._unary(context, span, created())
        _answered("OK", span, request.models, job_ids)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("accepted", extra={"job_ids": job_ids, "trace_id": tracing.trace_id(traceparent)})
        return pb.SubmitSeriesResponse(job_ids=job_ids)

    async def BatchSubmitSeries(self, request, context):
        # The rules (counts, required fields, finite values) were checked by the validation interceptor.
        metadata = context.invocation_metadata()
        span, traceparent = _traced(tracing.incoming(metadata), None, len(request.requests))

        async def created():
            return await (await self._admit(list(request.requests), context.time_remaining(), token_key(metadata),
                                            traceparent, batch=True))

        job_ids = await self._unary(context, span, created())
        _answered("OK", span, [m for r in request.requests for m in r.models], itertools.chain.from_iterable(job_ids))
        return pb.BatchSubmitSeriesResponse(responses=[pb.SubmitSeriesResponse(job_ids=ids) for ids in job_ids])

    async def StreamSeries(self, request_iterator, context):
        # Reading and answering run side by side: a producer may send many requests before
        # the first answer comes back, and answers still come in request order.
        answers: asyncio.Queue = asyncio.Queue(STREAM_WINDOW)
        done = object()
        metadata = context.invocation_metadata()
        token, caller = token_key(metadata), tracing.incoming(metadata)

        async def read():
            try:
                async for request in request_iterator:
                    if isinstance(request, Malformed):  # unreadable: no sequence to echo; the stream goes on
                        await answers.put((0, Rejected(grpc.StatusCode.INVALID_ARGUMENT, request.message,
                                                       request.violations), (), None))
                        continue
                    span, traceparent = _traced(caller, request.submission)  # a span per message
                    if request.HasField("submission"):
                        found = violations(request.submission)  # paths as SubmitSeries reports them
                    else:
                        found = [("submission", "is required")]
                    try:
                        if found:
                            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, describe(found), found)
                        admitted = await self._admit([request.submission], context.time_remaining(), token,
                                                     traceparent)
                        await answers.put((request.sequence, admitted, request.submission.models, span))
                    except Rejected as r:
                        await answers.put((request.sequence, r, (), span))
            finally:
                await answers.put(done)

        reader = asyncio.create_task(read())
        try:
            while (item := await answers.get()) is not done:
                sequence, outcome, models, span = item
                response = pb.StreamSeriesResponse(sequence=sequence)
                if isinstance(outcome, Rejected):
                    response.error.CopyFrom(_error(outcome))
                    _answered(outcome.code.name, span)
                else:
                    try:
                        response.job_ids.extend(await outcome)
                        _answered("OK", span, models, response.job_ids)
                    except grpc.aio.AioRpcError as exc:
                        response.error.CopyFrom(pb.SubmitError(code=passed_on(exc).value[0],
                                                               message=f"orchestrator: {exc.code().name}: "
                                                                       f"{exc.details()}"))
                        _answered(passed_on(exc).name, span)
                yield response
        finally:
            reader.cancel()
        await reader


def _traced(caller: str, request: pb.SubmitSeriesRequest | None, batch_size: int = 1) -> tuple[object | None, str]:
    """(the submission's span, or None with tracing off; the traceparent its jobs carry: the span's,
    or the caller's own with tracing off, so that a job still names the caller's trace). A
    BatchSubmitSeries call (``request`` None) is one span for all its jobs."""
    if not tracing.enabled():
        return None, caller
    attributes = {"satlas.batch_size": batch_size} if request is None else {
        "satlas.models": list(request.models), "satlas.series_length": len(request.series.values)}
    span = tracing.start("ingest.submit", caller, "server", attributes)
    return span, tracing.traceparent_of(span)


def _submission(request: pb.SubmitSeriesRequest, traceparent: str) -> jc.Submission:
    return jc.Submission(series=request.series, models=request.models, horizon=request.horizon,
                         idempotency_key=request.idempotency_key, traceparent=traceparent)


def _overloaded(exc: Overloaded) -> Rejected:
    return Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, f"ingest is overloaded ({exc}); retry later")


def unfit(request: pb.SubmitSeriesRequest, served: dict) -> list[Violation]:
    """What the served models refuse in a request that passed the contract's rules: unknown models,
    lengths, values a model's input type cannot hold, horizons."""
    found: list[Violation] = []
    n = len(request.series.values)
    largest = max(map(abs, request.series.values)) if n else 0.0  # (numpy's conversion of the field cost more)
    for i, name in enumerate(request.models):
        model = served.get(name)
        if model is None:
            found.append((f"models[{i}]", f"unknown model {name!r}; served: {', '.join(sorted(served)) or 'none'}"))
        elif not model.min_length <= n <= model.max_length:
            found.append(("series.values", f"has {n} points; {name} takes {model.min_length} to {model.max_length}"))
        else:
            found.extend(out_of_range(request.series.values, largest, model))
            if problem := horizon_problem(name, model.horizon, request.horizon):
                found.append(("horizon", problem))
    return found


def _answered(code: str, span, models=(), job_ids=()) -> None:
    """``job_ids``: any iterable, read only for a span (a batch's thousands need not be listed)."""
    metrics.answered(code, models)
    if span is not None:
        ids = list(job_ids)
        tracing.finish(span, code, {"satlas.job_ids": ids} if ids else None)


# The largest magnitude each floating input type holds: a finite double past it becomes infinite
# on the way to the model, which Triton refuses (the fuzz test found such series accepted, then failed).
FLOAT_MAX = {"FP32": float(np.finfo(np.float32).max), "FP16": float(np.finfo(np.float16).max)}


def out_of_range(values, largest: float, model) -> list[Violation]:
    """``largest`` is the series' largest magnitude, found once for every model of the request."""
    limit = min((FLOAT_MAX[s.data_type] for s in model.inputs if s.data_type in FLOAT_MAX), default=None)
    if limit is None or largest <= limit:
        return []
    i = next(i for i, v in enumerate(values) if abs(v) > limit)
    return [(f"series.values[{i}]", f"{values[i]:g} does not fit {model.name}'s input ({limit:.4g} at most)")]


def passed_on(exc: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """What the producer hears of a failed CreateJobs: a full orchestrator as RESOURCE_EXHAUSTED
    (back off), a deadline as it was, anything else as UNAVAILABLE (send again under the key)."""
    code = exc.code()
    return code if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED) \
        else grpc.StatusCode.UNAVAILABLE


def _error(r: Rejected) -> pb.SubmitError:
    return pb.SubmitError(
        code=r.code.value[0],
        message=r.message,
        field_violations=[pb.FieldViolation(field=f, description=d) for f, d in r.violations],
    )

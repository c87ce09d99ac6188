"""OrchestratorService (public) and JobControlService (internal) over one JobStore: reads in a
thread pool, writes through the group-commit writer (orchestrator_svc.writer)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as pb
from satlas.v1 import orchestrator_service_pb2_grpc as pb_grpc

from orchestrator_svc import db, metrics
from orchestrator_svc.admission import Admission
from orchestrator_svc.convert import STATUS_OF_STATE, TERMINAL_STATES
from orchestrator_svc.events import EventHub, by_size
from orchestrator_svc.store import JobStore, now
from orchestrator_svc.writer import Writer
from satkit import tracing
from satkit.logs import job_id_var
from satkit.validation import abort_invalid

log = logging.getLogger(__name__)
POLL_S = 2.0  # a watcher re-reads the job this often when no event came (events may be lost)
STATS_TTL_S = 1.0
# A batched WatchJobs message holds at most about this much (a client's default limit is 4 MiB).
WATCH_MESSAGE_BYTES = 1 << 20
REPLAY_LIMIT = 100_000  # about 30 MB of snapshots; seconds of jobs at the mesh's maximum


class Core:
    """What both servicers share: reads in a thread pool, writes through the group-commit
    writer, events, the dispatcher."""

    def __init__(self, store: JobStore, hub: EventHub, threads: int = 8, max_unfinished: int = 0):
        self.store = store
        self.hub = hub
        self.admission = Admission(max_unfinished)
        self.writer = Writer(store, self.publish)
        self.dispatcher = None  # set once built: the Dispatcher calls back into mark_queued
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="db")

    def set_dispatcher(self, dispatcher) -> None:
        self.dispatcher = dispatcher
        self.writer.dispatch = dispatcher.submit

    async def db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def publish(self, snaps: list[job_pb2.Job]) -> None:
        await self.hub.publish(snaps)
        metrics.observe(snaps)
        for job in snaps:  # successes are in the events and the table; failures say why here
            if job.state == js.JOB_STATE_FAILED:
                extra = {"job_id": job.job_id, "model": job.model_name}
                extra |= {"trace_id": job.trace_id} if job.trace_id else {}
                log.warning("job failed: %s", job.error, extra=extra)

    async def replay(self, since: dt.datetime, until: dt.datetime) -> int:
        """Publishes again the jobs last changed in [since, until] (for a replica that died
        before publishing them: orchestrator_svc.peers); says how many."""
        snaps = await self.db(self.store.changed_between, since, until, REPLAY_LIMIT)
        if len(snaps) == REPLAY_LIMIT:
            log.warning("re-sending only the first %d changed jobs", REPLAY_LIMIT)
        await self.hub.publish(snaps)  # not self.publish: the metrics counted them when they changed
        metrics.EVENTS_RESENT.inc(len(snaps))
        return len(snaps)

    async def mark_queued(self, job_ids: list[str], at: dt.datetime) -> None:
        await self.writer.mark_queued(job_ids, at)

    async def redispatch_stuck(self, older_than_s: float) -> int:
        # With messages waiting on the broker, an old QUEUED job is most likely one of them, behind
        # a backlog: sending it again would add to the backlog. Lost ones go once the queue drains.
        statuses = db.ACTIVE
        if (await self.dispatcher.queue_depth() or 0) > 0:
            statuses = (db.PENDING, db.RUNNING)
        dispatches, snaps = await self.db(self.store.redispatch_stuck, older_than_s, 500, statuses)
        if dispatches:
            log.warning("re-dispatching %d stuck jobs", len(dispatches))
            metrics.redispatched(snaps)
            await self.publish(snaps)
            self.dispatcher.submit(dispatches)
        return len(dispatches)


class JobControl(jc_grpc.JobControlServiceServicer):
    def __init__(self, core: Core):
        self.core = core

    async def CreateJobs(self, request, context):
        admission = self.core.admission
        if not admission.admit(sum(len(s.models) for s in request.submissions)):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{admission.unfinished} jobs are unfinished, the most allowed "
                                f"(ORCHESTRATOR_MAX_UNFINISHED) is {admission.limit}: try again later")
        for s in request.submissions:  # one check at the door: the row, the worker and the spans trust it
            if s.traceparent:
                s.traceparent = tracing.valid(s.traceparent)
        spans = _creating(request.submissions) if tracing.enabled() else ()
        ids = None
        try:
            ids = await self.core.writer.create_jobs(request.submissions)  # the writer dispatches them
        finally:
            for span, i in spans:
                tracing.finish(span, "OK" if ids else "INTERNAL", {"satlas.job_ids": ids[i]} if ids else None)
        return jc.CreateJobsResponse(created=[jc.CreatedJobs(job_ids=i) for i in ids])

    async def StartJobs(self, request, context):
        self.core.dispatcher.started(request.job_ids)
        return jc.StartJobsResponse(job_ids=await self.core.writer.start_jobs(request.job_ids, request.worker))

    async def ReportResults(self, request, context):
        spans = [(o, tracing.start("orchestrator.report", o.traceparent, "server", {
            "satlas.job_id": o.job_id, "satlas.outcome": "error" if o.error else "ok",
            "satlas.batch_size": len(request.outcomes)})) for o in request.outcomes
            if tracing.sampled(o.traceparent)] if tracing.enabled() else ()
        applied = None
        try:
            applied = await self.core.writer.report_results(request.outcomes)  # committed, and its events out
        finally:
            for o, span in spans:
                tracing.finish(span, "OK" if applied is not None else "INTERNAL")
        self.core.dispatcher.finished([o.job_id for o in request.outcomes])
        return jc.ReportResultsResponse(applied=applied)


def _creating(submissions) -> list[tuple[object, int]]:
    """(span, index) per sampled submission, under the ingest's (a new trace if it sent none); the
    jobs carry it on. An unsampled one keeps the ingest's traceparent."""
    spans = []
    for i, s in enumerate(submissions):
        if s.traceparent and not tracing.sampled(s.traceparent):
            continue
        span = tracing.start("orchestrator.create", s.traceparent, "server", {
            "satlas.models": list(s.models), "satlas.batch_size": len(submissions)})
        s.traceparent = tracing.traceparent_of(span)
        spans.append((span, i))
    return spans


class Orchestrator(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, core: Core):
        self.core = core
        self._stats: dict[float, tuple[float, asyncio.Future]] = {}  # window -> (computed at, response)

    async def _get_or_404(self, job_id: str, context, with_series: bool = True) -> job_pb2.Job:
        job = await self.core.db(self.core.store.get, job_id, with_series)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id!r} not found")
        return job

    async def GetJob(self, request, context):
        job_id_var.set(request.job_id)
        return pb.GetJobResponse(job=await self._get_or_404(request.job_id, context))

    async def ListJobs(self, request, context):
        problems = []
        if request.page_size < 0:
            problems.append(("page_size", "must not be negative"))
        if js.JOB_STATE_UNSPECIFIED in request.states or any(s not in STATUS_OF_STATE for s in request.states):
            problems.append(("states", "must name known states, not JOB_STATE_UNSPECIFIED"))
        if problems:
            await abort_invalid(context, problems)
        page_size = min(request.page_size or 50, 1000)
        statuses = [STATUS_OF_STATE[s] for s in request.states]
        try:
            jobs, token = await self.core.db(
                self.core.store.list, request.model_name, statuses, page_size, request.page_token
            )
        except ValueError as exc:
            await abort_invalid(context, [("page_token", str(exc))])
        return pb.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(self, request, context):
        job_id_var.set(request.job_id)
        job = await self.core.writer.cancel(request.job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")
        return pb.CancelJobResponse(job=job)

    async def WatchJob(self, request, context):
        job_id_var.set(request.job_id)
        with self.core.hub.subscribe() as sub:  # subscribe before reading: nothing falls in between
            job = await self._get_or_404(request.job_id, context, with_series=False)
            yield pb.WatchJobResponse(job=job)
            last = job.version
            while job.state not in TERMINAL_STATES:
                batch = await sub.get(timeout=POLL_S)
                candidates = [j for j in batch if j.job_id == request.job_id] if batch is not None else None
                if candidates is None:  # quiet: re-read, in case an event was lost
                    candidates = [await self._get_or_404(request.job_id, context, with_series=False)]
                for j in candidates:
                    if j.version > last:
                        job, last = j, j.version
                        yield pb.WatchJobResponse(job=j)
                if job.state not in TERMINAL_STATES:  # what the batch carried went out first
                    await self._end_if_stopping(sub, context)

    async def WatchJobs(self, request, context):
        models = set(request.model_names)
        states = set(request.states)

        def wanted(batch):
            return [j for j in batch if (not models or j.model_name in models) and (not states or j.state in states)]

        with self.core.hub.subscribe() as sub:
            # Headers now tell the client it is subscribed, before any event: a client can wait
            # for them before submitting, and a browser sees an idle stream as open.
            await context.send_initial_metadata(())
            while True:
                batch = await sub.get()
                if request.batched:  # all that waits: a slow reader gets bigger messages, not more
                    for jobs in by_size(wanted(batch + sub.take_waiting()), WATCH_MESSAGE_BYTES):
                        yield pb.WatchJobsResponse(jobs=jobs)
                else:
                    for j in wanted(batch):
                        yield pb.WatchJobsResponse(job=j)
                await self._end_if_stopping(sub, context)

    @staticmethod
    async def _end_if_stopping(sub, context) -> None:
        if sub.ended:  # UNAVAILABLE: what clients already retry on, against another replica or this one back
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the orchestrator is stopping; watch again")

    async def GetStats(self, request, context):
        window_s = request.window.ToTimedelta().total_seconds() if request.HasField("window") else 60.0
        if not 0 < window_s <= 3600:
            await abort_invalid(context, [("window", "must be more than 0 s and at most 1 hour")])
        # The counts scan the whole table: however many dashboards poll, one computation per
        # window a second, shared by everyone asking meanwhile.
        loop = asyncio.get_running_loop()
        cached = self._stats.get(window_s)
        if cached is None or loop.time() - cached[0] > STATS_TTL_S:
            self._stats = {w: c for w, c in self._stats.items() if loop.time() - c[0] <= STATS_TTL_S}
            cached = (loop.time(), asyncio.ensure_future(self._compute_stats(window_s)))
            self._stats[window_s] = cached
        try:
            return await asyncio.shield(cached[1])
        except Exception:
            self._stats.pop(window_s, None)
            raise

    async def _compute_stats(self, window_s: float) -> pb.GetStatsResponse:
        t = now()
        since = t - dt.timedelta(seconds=window_s)
        counts, finished, workers = await asyncio.gather(
            self.core.db(self.core.store.counts),
            self.core.db(self.core.store.finished_since, since),
            self.core.db(self.core.store.active_workers, since),
        )
        response = pb.GetStatsResponse(
            window=Duration(seconds=int(window_s), nanos=int((window_s % 1) * 1e9)),
            compute_time=Timestamp(seconds=int(t.timestamp()), nanos=t.microsecond * 1000),
            active_workers=workers,
        )
        all_counts: dict[str, int] = {}
        for per in counts.values():
            for status, n in per.items():
                all_counts[status] = all_counts.get(status, 0) + n
        response.totals.CopyFrom(_counts(all_counts))
        response.queue_depth = all_counts.get(db.PENDING, 0) + all_counts.get(db.QUEUED, 0)
        _fill(response, finished, window_s)
        for model in sorted(set(counts) | {f[0] for f in finished}):
            m = response.models.add(model_name=model, totals=_counts(counts.get(model, {})))
            mine = [f for f in finished if f[0] == model]
            _fill(m, mine, window_s)
            inference = [f[3] for f in mine if f[1] == db.COMPLETED and f[3] is not None]
            m.mean_inference_seconds = float(np.mean(inference)) if inference else 0.0
        return response


def _counts(per_status: dict[str, int]) -> pb.JobCounts:
    c = pb.JobCounts(
        pending=per_status.get(db.PENDING, 0),
        queued=per_status.get(db.QUEUED, 0),
        running=per_status.get(db.RUNNING, 0),
        succeeded=per_status.get(db.COMPLETED, 0),
        failed=per_status.get(db.FAILED, 0),
        cancelled=per_status.get(db.CANCELLED, 0),
    )
    c.total = c.pending + c.queued + c.running + c.succeeded + c.failed + c.cancelled
    return c


def _fill(target, finished, window_s: float) -> None:
    """Throughput, success rate and latency of the jobs that finished in the window."""
    target.throughput = len(finished) / window_s
    done = [f for f in finished if f[1] != db.CANCELLED]
    target.success_rate = sum(f[1] == db.COMPLETED for f in done) / len(done) if done else 0.0
    latencies = np.array([f[2] for f in finished if f[1] == db.COMPLETED and f[2] is not None])
    if latencies.size:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        target.latency.CopyFrom(
            pb.LatencySummary(p50=p50, p95=p95, p99=p99, mean=float(latencies.mean()), count=latencies.size)
        )

"""The worker's spans (``satkit.tracing``): one per message it runs (continuing the message's
headers, linked to the jobs it carries), one per Triton request under it, and one per job under
the job's own trace; that span's context goes back with the job's outcome, so the orchestrator's
span of the result follows it. With tracing off every method returns at once."""

from __future__ import annotations

from satlas.internal.v1 import job_control_service_pb2 as jc

from satkit import tracing
from satkit.queue import TaskJob


class Spans:
    def __init__(self, jobs: list[TaskJob], message: str = "", requeues: int = 0, on: bool | None = None):
        self.on = tracing.enabled() if on is None else on
        if not self.on:
            return
        # Only for a message that carries a sampled job: spans under unsampled ones are never kept.
        sampled = [j.traceparent for j in jobs if tracing.sampled(j.traceparent)]
        self.on = bool(sampled)
        if self.on:
            self.batch = tracing.start("worker.run_jobs", message, "consumer", {
                "satlas.batch_size": len(jobs), "satlas.requeues": requeues}, links=sampled)
            self.parent = tracing.traceparent_of(self.batch)

    def request(self, model: str, jobs: list[TaskJob], seconds: float, error: str = "",
                outcomes: dict[str, jc.JobOutcome] | None = None) -> None:
        """A Triton request that carried ``jobs`` and took ``seconds``; ``outcomes`` by job id, for
        the jobs it settled (none when it is to be tried again)."""
        if not self.on:
            return
        end = tracing.now_ns()
        start = end - int(seconds * 1e9)
        call = tracing.start("triton.infer", self.parent, "client", {"satlas.model": model,
                             "satlas.batch_size": len(jobs)}, links=[j.traceparent for j in jobs
                                                                     if tracing.sampled(j.traceparent)], start_ns=start)
        tracing.finish(call, error or "OK", end_ns=end)
        self.settled(model, jobs, outcomes or {}, start, end, len(jobs), tracing.traceparent_of(call))

    def settled(self, model: str, jobs: list[TaskJob], outcomes: dict[str, jc.JobOutcome], start: int | None = None,
                end: int | None = None, batch_size: int = 1, request: str = "") -> None:
        """Each job's span, in its own trace; the outcome carries it to the orchestrator."""
        if not self.on:
            return
        for job in jobs:
            outcome = outcomes.get(job.job_id)
            if outcome is None or not tracing.sampled(job.traceparent):
                continue
            span = tracing.start("worker.infer", job.traceparent, "internal", {
                "satlas.job_id": job.job_id, "satlas.model": model, "satlas.batch_size": batch_size,
                "satlas.inference_seconds": outcome.inference_seconds}, links=[request] if request else (),
                start_ns=start)
            outcome.traceparent = tracing.traceparent_of(span)
            tracing.finish(span, "FAILED" if outcome.error else "OK",
                           {"satlas.error": outcome.error} if outcome.error else None, end_ns=end)

    def end(self, unavailable: int) -> None:
        if self.on:
            tracing.finish(self.batch, "UNAVAILABLE" if unavailable else "OK", {"satlas.unavailable": unavailable})

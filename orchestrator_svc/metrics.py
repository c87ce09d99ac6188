"""The orchestrator's job metrics, counted from the changes it commits (each change once, on the
replica that made it: sum over replicas for the mesh)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from satkit.jobs import TERMINAL_STATES

SUBMITTED = Counter("satlas_jobs_submitted", "Jobs created.", ["model"])
FINISHED = Counter("satlas_jobs_finished", "Jobs that reached a terminal state.", ["model", "state"])
REDISPATCHED = Counter("satlas_jobs_redispatched", "Jobs sent again by the reconciler after no progress.",
                       ["model"])
# The stages a job's JobTimings report (the dashboard shows the same figures).
DURATION = Histogram("satlas_job_duration_seconds", "Seconds a finished job spent: queue (created to started), "
                     "inference (its Triton request), total (created to finished).", ["model", "stage"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))


def state_label(state: int) -> str:
    return js.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def observe(jobs: list[job_pb2.Job]) -> None:
    for job in jobs:
        if job.state == js.JOB_STATE_PENDING:
            (SUBMITTED if job.version == 1 else REDISPATCHED).labels(job.model_name).inc()
        elif job.state in TERMINAL_STATES:
            FINISHED.labels(job.model_name, state_label(job.state)).inc()
            if job.state == js.JOB_STATE_SUCCEEDED:
                t = job.timings
                for stage, seconds in (("queue", t.queue_seconds), ("inference", t.inference_seconds),
                                       ("total", t.total_seconds)):
                    DURATION.labels(job.model_name, stage).observe(seconds)

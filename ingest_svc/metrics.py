"""The ingest's own metrics: what it admitted and refused, and what waits for the orchestrator.
Unary calls that validation refuses before they reach the service are counted by the gRPC metrics
(``grpc_server_handled_total{grpc_method="SubmitSeries",grpc_code="INVALID_ARGUMENT"}``)."""

from __future__ import annotations

import collections

from prometheus_client import Counter, Gauge

SUBMISSIONS = Counter("satlas_ingest_submissions", "Submissions answered (a unary call, or one message of a "
                      "stream), by status code.", ["code"])
ADMITTED = Counter("satlas_ingest_jobs_admitted", "Job ids answered for admitted submissions (a replayed "
                   "idempotency key counts again).", ["model"])
BACKLOG = Gauge("satlas_ingest_backlog", "Submissions admitted and not yet answered by the orchestrator.")


def answered(code: str, models=()) -> None:
    SUBMISSIONS.labels(code).inc()
    for model, n in collections.Counter(models).items():  # a batch's thousands of jobs: one inc a model
        ADMITTED.labels(model).inc(n)


def watch(batcher) -> None:
    BACKLOG.set_function(lambda: batcher.backlog)

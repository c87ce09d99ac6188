"""The Celery worker: `celery -A analysis_svc.worker.app:app worker -Q satlas.jobs`.

Each worker process opens its own Runner (Triton stream, orchestrator channel) on first use,
after the fork, and keeps it for its life.
"""

from __future__ import annotations

import logging
import os

import grpc
from celery import signals

from analysis_svc.settings import Settings
from analysis_svc.worker import metrics
from analysis_svc.worker.runner import Runner
from satkit import logs, tracing
from satkit.queue import TASK_NAME, TASK_SERIALIZER, decode_task, encode_task, make_celery
from satkit.settings import load

log = logging.getLogger(__name__)
settings = load(Settings)
app = make_celery(settings.broker_url, "satlas-analysis")
app.conf.worker_consumer = "analysis_svc.worker.consumer:Consumer"  # task events in batches
REQUEUE_DELAY_S = 5.0
MAX_ORCHESTRATOR_RETRIES = 12  # a minute of an unreachable orchestrator; then the reconciler's turn
_runner: tuple[int, Runner] | None = None


@signals.setup_logging.connect
def _setup_logging(**_):
    logs.setup("analysis-worker")


@signals.worker_process_init.connect
def _setup_tracing(**_):
    """In each pool process, after the fork (the exporter's gRPC channel must not cross one)."""
    tracing.setup("analysis-worker")


@signals.worker_process_shutdown.connect
def _flush_spans(**_):
    tracing.shutdown()


@signals.worker_ready.connect
def _serve_metrics(**_):
    """In the main process, once its pool has started: the sum of every pool process's counts."""
    metrics.serve(settings.worker_metrics_addr, settings.worker_metrics_dir)


def runner() -> Runner:
    global _runner
    if _runner is None or _runner[0] != os.getpid():
        _runner = (os.getpid(), Runner(settings))
    return _runner[1]


@app.task(name=TASK_NAME, bind=True, max_retries=None, serializer=TASK_SERIALIZER)  # retries too
def run_jobs(self, payload: bytes, requeues: int = 0) -> int:
    """``payload``: a serialised satlas.internal.v1.RunJobsTask."""
    jobs = decode_task(payload)
    r = runner()
    message = getattr(self.request, "traceparent", None) or (self.request.headers or {}).get("traceparent", "")
    try:
        unavailable = r.run(jobs, claim=requeues == 0, traceparent=message or "", requeues=requeues)
    except grpc.RpcError as exc:  # the orchestrator stayed away; Runner already retried a while
        if self.request.retries >= MAX_ORCHESTRATOR_RETRIES:
            raise
        log.warning("orchestrator unreachable (%s); task again in %.0fs", exc.code().name, REQUEUE_DELAY_S)
        raise self.retry(args=[payload, requeues], countdown=REQUEUE_DELAY_S, headers=_carried(message))
    if unavailable:
        if requeues >= settings.max_requeues:
            r.fail(unavailable, f"Triton stayed unavailable through {requeues + 1} rounds of retries")
        else:
            log.warning("re-queueing %d jobs in %.0fs (Triton unavailable)", len(unavailable), REQUEUE_DELAY_S)
            raise self.retry(args=[encode_task(unavailable), requeues + 1], countdown=REQUEUE_DELAY_S,
                             headers=_carried(message))
    return len(jobs)


def _carried(traceparent: str) -> dict | None:
    """The message's trace context for its re-queued copy (Celery's retry drops custom headers)."""
    return {"traceparent": traceparent} if traceparent else None

"""The worker's metrics. Celery's pool processes each count into their own files under
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, set before it is imported: the
launcher and compose do, to an empty directory at each start), and the worker's main process serves
their sum on WORKER_METRICS_ADDR. A pool process that dies leaves its files, so its counts stay in the sum."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from satkit import metrics

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram("satlas_worker_batch_size", "Jobs one Triton request carried.", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
TRITON_SECONDS = Histogram("satlas_worker_triton_request_seconds", "Seconds from sending a Triton request to "
                           "its answer.", ["model"],
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RETRIES = Counter("satlas_worker_triton_retries", "Jobs tried again on Triton after a transient error.", ["model"])
RECONNECTS = Counter("satlas_worker_stream_reconnects", "Triton streams opened again after one broke.")
JOBS = Counter("satlas_worker_jobs", "Job outcomes reported to the orchestrator: ok (a result) or error (a job "
               "run twice, re-dispatched or redelivered, reports twice).",
               ["model", "outcome"])


def serve(address: str, directory: str) -> int | None:
    """The sum over the pool's processes on ``address``; without a multiprocess directory only this
    process's own (a pool's processes would be missing), so that is said."""
    if not directory:
        if metrics.wanted(address):
            log.warning("PROMETHEUS_MULTIPROC_DIR is not set: the worker's /metrics misses its pool processes' counts")
        return metrics.serve(address)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return metrics.serve(address, registry)

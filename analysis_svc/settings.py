"""Analysis settings, the server's and the worker's: each field reads one environment variable."""

from __future__ import annotations

from dataclasses import dataclass

from satkit.settings import (
    ANALYSIS_ADDR,
    ANALYSIS_METRICS_ADDR,
    BROKER_URL,
    ORCHESTRATOR_ADDR,
    TRITON_URL,
    Var,
    setting,
)

TRITON_TIMEOUT_S = Var("TRITON_TIMEOUT_S", 10.0, "the deadline of one inference request")
TRITON_RETRIES = Var("TRITON_RETRIES", 4, "tries for transient Triton errors, with backoff")
WORKER_METRICS_ADDR = Var("WORKER_METRICS_ADDR", "127.0.0.1:9104", "the Celery worker's Prometheus /metrics, its "
                          "processes summed (their files under PROMETHEUS_MULTIPROC_DIR; `off`: none)")
MULTIPROC_DIR = Var("PROMETHEUS_MULTIPROC_DIR", "", "the worker: an empty directory its pool processes count into "
                    "(prometheus_client reads it; `make up` sets and empties it at each start)")
MAX_REQUEUES = Var("ANALYSIS_MAX_REQUEUES", 6,
                   "the worker: rounds of re-queueing (5 s apart) while Triton stays down, then the jobs fail")


@dataclass(frozen=True)
class Settings:
    address: str = setting(ANALYSIS_ADDR)
    metrics_addr: str = setting(ANALYSIS_METRICS_ADDR)  # the server's
    worker_metrics_addr: str = setting(WORKER_METRICS_ADDR)
    worker_metrics_dir: str = setting(MULTIPROC_DIR)
    triton_url: str = setting(TRITON_URL)
    orchestrator_addr: str = setting(ORCHESTRATOR_ADDR)
    broker_url: str = setting(BROKER_URL)
    triton_timeout_s: float = setting(TRITON_TIMEOUT_S)
    triton_retries: int = setting(TRITON_RETRIES)
    max_requeues: int = setting(MAX_REQUEUES)
    catalogue_ttl_s: float = 10.0  # how long model descriptions are reused
    grace_s: float = 5.0

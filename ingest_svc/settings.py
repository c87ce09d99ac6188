"""Ingest settings: each field reads one environment variable (``satkit.settings``)."""

from __future__ import annotations

from dataclasses import dataclass

from satkit.settings import ANALYSIS_ADDR, INGEST_ADDR, INGEST_METRICS_ADDR, ORCHESTRATOR_ADDR, Var, setting

MAX_BATCH = Var("INGEST_MAX_BATCH", 256, "submissions per CreateJobs call")
MAX_WAIT_S = Var("INGEST_MAX_WAIT_S", 0.0, "how long a submission waits for company before its batch goes "
                 "(0: none; under load batches fill while the call before is out)")
GAP_S = Var("INGEST_GAP_S", 0.01, "a CreateJobs call goes no sooner than this after the last one began; "
            "a submission after a quieter spell goes at once (0: no pacing)")
MAX_IN_FLIGHT = Var("INGEST_MAX_IN_FLIGHT", 2, "CreateJobs calls at once (the next batch fills meanwhile); "
                    "past the first only when a whole batch is waiting")
MAX_PENDING = Var("INGEST_MAX_PENDING", 20_000, "backlog of submissions past which requests get RESOURCE_EXHAUSTED")
QUOTA = Var("INGEST_QUOTA_JOBS_PER_S", 5000.0, "jobs per second each token may submit (one series for two "
            "models is two jobs), past it RESOURCE_EXHAUSTED; 0: no quota; calls without a token are not counted")
QUOTA_BURST = Var("INGEST_QUOTA_BURST", 10000.0, "jobs a token may submit at once before the quota applies")
BDP_PROBE = Var("INGEST_BDP_PROBE", False, "let gRPC grow a stream's flow-control window to the bandwidth-delay "
                "product (MBs): for producers far away; off, a stream holds ~64 KB of requests the ingest has not "
                "read, so a saturated ingest slows a producer down instead of holding seconds of its requests")
MAX_MESSAGE_BYTES = Var("INGEST_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, "the largest request message")


@dataclass(frozen=True)
class Settings:
    address: str = setting(INGEST_ADDR)
    metrics_addr: str = setting(INGEST_METRICS_ADDR)
    orchestrator_addr: str = setting(ORCHESTRATOR_ADDR)
    analysis_addr: str = setting(ANALYSIS_ADDR)  # where the model list comes from
    max_batch: int = setting(MAX_BATCH)
    max_wait_s: float = setting(MAX_WAIT_S)
    gap_s: float = setting(GAP_S)
    max_in_flight: int = setting(MAX_IN_FLIGHT)
    max_pending: int = setting(MAX_PENDING)
    max_message_bytes: int = setting(MAX_MESSAGE_BYTES)
    bdp_probe: bool = setting(BDP_PROBE)
    quota_jobs_per_s: float = setting(QUOTA)
    quota_burst: float = setting(QUOTA_BURST)
    models_ttl_s: float = 10.0
    grace_s: float = 5.0

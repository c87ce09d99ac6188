"""Ingest settings, from the environment (defaults in brackets)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50051"  # INGEST_ADDR
    orchestrator_addr: str = "127.0.0.1:50052"  # ORCHESTRATOR_ADDR
    analysis_addr: str = "127.0.0.1:50053"  # ANALYSIS_ADDR: where the model list comes from
    max_batch: int = 256  # INGEST_MAX_BATCH: submissions per CreateJobs call
    max_wait_s: float = 0.002  # INGEST_MAX_WAIT_S: how long a submission waits for company
    max_in_flight: int = 1  # INGEST_MAX_IN_FLIGHT: CreateJobs calls at once (the next batch fills meanwhile)
    max_pending: int = 20_000  # INGEST_MAX_PENDING: backlog past which requests get RESOURCE_EXHAUSTED
    max_message_bytes: int = 4 * 1024 * 1024  # INGEST_MAX_MESSAGE_BYTES
    models_ttl_s: float = 10.0
    grace_s: float = 5.0

    @classmethod
    def from_env(cls) -> "Settings":
        e = os.environ
        return cls(
            address=e.get("INGEST_ADDR", cls.address),
            orchestrator_addr=e.get("ORCHESTRATOR_ADDR", cls.orchestrator_addr),
            analysis_addr=e.get("ANALYSIS_ADDR", cls.analysis_addr),
            max_batch=int(e.get("INGEST_MAX_BATCH", cls.max_batch)),
            max_wait_s=float(e.get("INGEST_MAX_WAIT_S", cls.max_wait_s)),
            max_in_flight=int(e.get("INGEST_MAX_IN_FLIGHT", cls.max_in_flight)),
            max_pending=int(e.get("INGEST_MAX_PENDING", cls.max_pending)),
            max_message_bytes=int(e.get("INGEST_MAX_MESSAGE_BYTES", cls.max_message_bytes)),
        )

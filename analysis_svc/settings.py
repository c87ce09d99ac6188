"""Analysis settings, from the environment (defaults in brackets)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50053"  # ANALYSIS_ADDR
    triton_url: str = "127.0.0.1:8001"  # TRITON_URL: Triton's gRPC endpoint
    orchestrator_addr: str = "127.0.0.1:50052"  # ORCHESTRATOR_ADDR
    broker_url: str = "redis://127.0.0.1:6379/0"  # BROKER_URL [REDIS_URL]
    triton_timeout_s: float = 10.0  # TRITON_TIMEOUT_S: deadline of one inference
    triton_retries: int = 4  # TRITON_RETRIES: tries for transient Triton errors, with backoff
    catalogue_ttl_s: float = 10.0  # how long model descriptions are reused
    grace_s: float = 5.0

    @classmethod
    def from_env(cls) -> "Settings":
        e = os.environ
        return cls(
            address=e.get("ANALYSIS_ADDR", cls.address),
            triton_url=e.get("TRITON_URL", cls.triton_url),
            orchestrator_addr=e.get("ORCHESTRATOR_ADDR", cls.orchestrator_addr),
            broker_url=e.get("BROKER_URL") or e.get("REDIS_URL") or cls.broker_url,
            triton_timeout_s=float(e.get("TRITON_TIMEOUT_S", cls.triton_timeout_s)),
            triton_retries=int(e.get("TRITON_RETRIES", cls.triton_retries)),
        )

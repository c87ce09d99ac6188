"""Orchestrator settings, from the environment (defaults in brackets)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def default_database_url() -> str:
    return f"sqlite:///{ROOT / '.run' / 'satlas.db'}"


@dataclass(frozen=True)
class Settings:
    address: str = "127.0.0.1:50052"  # ORCHESTRATOR_ADDR
    database_url: str = ""  # DATABASE_URL [sqlite:///.run/satlas.db]
    redis_url: str = "redis://127.0.0.1:6379/0"  # REDIS_URL: events (pub/sub)
    broker_url: str = ""  # BROKER_URL [REDIS_URL]: the Celery broker
    jobs_per_message: int = 16  # ORCHESTRATOR_JOBS_PER_MESSAGE: jobs carried by one Celery message
    dispatch_ahead: int = 2  # ORCHESTRATOR_DISPATCH_AHEAD: unstarted messages past which new ones fill up (0: never)
    dispatch_linger_s: float = 0.05  # ORCHESTRATOR_DISPATCH_LINGER_S: the longest a job waits to fill a message
    reconcile_every_s: float = 5.0  # ORCHESTRATOR_RECONCILE_S
    stuck_after_s: float = 30.0  # ORCHESTRATOR_STUCK_S: a PENDING/QUEUED/RUNNING job this old is re-dispatched
    max_attempts: int = 3  # ORCHESTRATOR_MAX_ATTEMPTS: starts before a job fails as poison
    migrate: bool = True  # ORCHESTRATOR_MIGRATE: run Alembic migrations at start-up
    grace_s: float = 5.0

    @classmethod
    def from_env(cls) -> "Settings":
        e = os.environ
        redis_url = e.get("REDIS_URL", cls.redis_url)
        return cls(
            address=e.get("ORCHESTRATOR_ADDR", cls.address),
            database_url=e.get("DATABASE_URL") or default_database_url(),
            redis_url=redis_url,
            broker_url=e.get("BROKER_URL") or redis_url,
            jobs_per_message=int(e.get("ORCHESTRATOR_JOBS_PER_MESSAGE", cls.jobs_per_message)),
            dispatch_ahead=int(e.get("ORCHESTRATOR_DISPATCH_AHEAD", cls.dispatch_ahead)),
            dispatch_linger_s=float(e.get("ORCHESTRATOR_DISPATCH_LINGER_S", cls.dispatch_linger_s)),
            reconcile_every_s=float(e.get("ORCHESTRATOR_RECONCILE_S", cls.reconcile_every_s)),
            stuck_after_s=float(e.get("ORCHESTRATOR_STUCK_S", cls.stuck_after_s)),
            max_attempts=int(e.get("ORCHESTRATOR_MAX_ATTEMPTS", cls.max_attempts)),
            migrate=e.get("ORCHESTRATOR_MIGRATE", "1") not in ("0", "false", "no"),
        )

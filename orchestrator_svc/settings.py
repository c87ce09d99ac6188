"""Orchestrator settings: each field reads one environment variable (``satkit.settings``)."""

from __future__ import annotations

from dataclasses import dataclass

from satkit.settings import (
    BROKER_URL,
    DATABASE_URL,
    ORCHESTRATOR_ADDR,
    ORCHESTRATOR_METRICS_ADDR,
    REDIS_URL,
    Var,
    setting,
)

# Messages fill only while the mesh is busy (dispatch.py), so this bounds them at saturation, where
# a message's fixed cost over every process, spread over 256 jobs instead of 64, gave +28 % jobs/s.
JOBS_PER_MESSAGE = Var("ORCHESTRATOR_JOBS_PER_MESSAGE", 256, "jobs carried by one Celery message")
DISPATCH_AHEAD = Var("ORCHESTRATOR_DISPATCH_AHEAD", 2,
                     "unstarted messages past which new ones wait to fill up (0: never wait)")
DISPATCH_LINGER_S = Var("ORCHESTRATOR_DISPATCH_LINGER_S", 0.05, "the longest a job waits to fill a message")
DISPATCH_GAP_S = Var("ORCHESTRATOR_DISPATCH_GAP_S", 0.025,
                     "while a message is unfinished, the next goes no sooner than this after the last (0: at once)")
RECONCILE_S = Var("ORCHESTRATOR_RECONCILE_S", 5.0, "how often the reconciler looks for stuck jobs")
STUCK_S = Var("ORCHESTRATOR_STUCK_S", 30.0, "a PENDING/QUEUED/RUNNING job unchanged this long is re-dispatched")
PUBLISH_EVERY_S = Var("ORCHESTRATOR_PUBLISH_EVERY_S", 0.01,
                      "the shortest time between two PUBLISHes of job events to the other replicas")
MAX_ATTEMPTS = Var("ORCHESTRATOR_MAX_ATTEMPTS", 3, "starts before a job fails as poison")
MAX_UNFINISHED = Var("ORCHESTRATOR_MAX_UNFINISHED", 50_000,
                     "accepted jobs not yet finished past which new ones get RESOURCE_EXHAUSTED (0: no bound)")
MIGRATE = Var("ORCHESTRATOR_MIGRATE", True, "run the Alembic migrations at start-up")


@dataclass(frozen=True)
class Settings:
    address: str = setting(ORCHESTRATOR_ADDR)
    metrics_addr: str = setting(ORCHESTRATOR_METRICS_ADDR)
    database_url: str = setting(DATABASE_URL)
    redis_url: str = setting(REDIS_URL)  # events (pub/sub)
    broker_url: str = setting(BROKER_URL)
    jobs_per_message: int = setting(JOBS_PER_MESSAGE)
    dispatch_ahead: int = setting(DISPATCH_AHEAD)
    dispatch_linger_s: float = setting(DISPATCH_LINGER_S)
    dispatch_gap_s: float = setting(DISPATCH_GAP_S)
    reconcile_every_s: float = setting(RECONCILE_S)
    stuck_after_s: float = setting(STUCK_S)
    publish_every_s: float = setting(PUBLISH_EVERY_S)
    max_attempts: int = setting(MAX_ATTEMPTS)
    max_unfinished: int = setting(MAX_UNFINISHED)
    migrate: bool = setting(MIGRATE)
    grace_s: float = 5.0


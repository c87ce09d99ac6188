"""The orchestrator's job metrics, counted from the changes it commits (each change once, on the
replica that made it: sum over replicas for the mesh), and the jobs in each unfinished state, read
from the database when scraped (the same whole-mesh figure on every replica: take the max)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from orchestrator_svc.statements import POISON_ERROR
from satkit.jobs import TERMINAL_STATES

SUBMITTED = Counter("satlas_jobs_submitted", "Jobs created.", ["model"])
FINISHED = Counter("satlas_jobs_finished", "Jobs that reached a terminal state.", ["model", "state"])
REDISPATCHED = Counter("satlas_jobs_redispatched", "Jobs sent again by the reconciler after no progress.",
                       ["model"])
POISONED = Counter("satlas_jobs_poisoned", "Jobs failed as poison: started too often, never finished.", ["model"])
# The stages a job's JobTimings report (the dashboard shows the same figures).
DURATION = Histogram("satlas_job_duration_seconds", "Seconds a finished job spent: queue (created to started), "
                     "inference (its Triton request), total (created to finished).", ["model", "stage"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
EVENTS_PUBLISHED = Counter("satlas_events_published", "Job changes published to the other replicas (Redis).")
EVENTS_DROPPED = Counter("satlas_events_dropped", "Job changes that did not reach someone: `publish` (Redis "
                         "refused them; watchers fall back to reading the table) or `watcher` (a watcher too far "
                         "behind lost its oldest).", ["reason"])
EVENTS_RESENT = Counter("satlas_events_resent", "Job changes published again for a replica that died before "
                        "publishing them (orchestrator_svc.peers): each a repeat of a version or one never seen.")
UNFINISHED = ("pending", "queued", "running")


def redispatched(jobs: list[job_pb2.Job]) -> None:
    for job in jobs:
        REDISPATCHED.labels(job.model_name).inc()


_STATE_LABELS = {v.number: v.name.removeprefix("JOB_STATE_").lower() for v in js.JobState.DESCRIPTOR.values}


def state_label(state: int) -> str:
    return _STATE_LABELS[state]


_children: dict[tuple, object] = {}


def _child(metric, *labels):
    """``metric.labels(*labels)``, looked up once: labels() validates and locks on every call, which
    was most of this module's cost at four events a job."""
    child = _children.get((metric, labels))
    if child is None:
        child = _children[(metric, labels)] = metric.labels(*labels)
    return child


def observe(jobs: list[job_pb2.Job]) -> None:
    counts: collections.Counter[tuple] = collections.Counter()  # one inc per counter and label set
    for job in jobs:
        if job.state == js.JOB_STATE_PENDING and job.version == 1:
            counts[(SUBMITTED, job.model_name)] += 1
        elif job.state in TERMINAL_STATES:
            counts[(FINISHED, job.model_name, state_label(job.state))] += 1
            if job.state == js.JOB_STATE_FAILED and job.error.startswith(POISON_ERROR):
                counts[(POISONED, job.model_name)] += 1
            if job.state == js.JOB_STATE_SUCCEEDED:
                t = job.timings
                _child(DURATION, job.model_name, "queue").observe(t.queue_seconds)
                _child(DURATION, job.model_name, "inference").observe(t.inference_seconds)
                _child(DURATION, job.model_name, "total").observe(t.total_seconds)
    for (metric, *labels), n in counts.items():
        _child(metric, *labels).inc(n)


class InState(Collector):
    """``satlas_jobs_in_state{state}``: one indexed count of the unfinished jobs per scrape, reused
    for ``ttl_s`` when several scrapers ask at once."""

    def __init__(self, count: Callable[[], dict[str, int]], ttl_s: float = 0.5):
        self.count, self.ttl_s = count, ttl_s
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, int]] = (float("-inf"), {})

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("satlas_jobs_in_state", "Jobs in each unfinished state, in the whole mesh "
                                 "(read from the database; every replica reports it: aggregate with max).",
                                 labels=["state"])

    def describe(self):  # what registering asks for: no query on the event loop at start-up
        yield self._family()

    def collect(self):
        family = self._family()
        with self._lock:
            at, counts = self._last
            if time.monotonic() - at > self.ttl_s:
                try:
                    counts = self.count()
                except Exception:  # the database is away: no sample rather than a wrong one
                    return
                self._last = (time.monotonic(), counts)
        for state in UNFINISHED:
            family.add_metric([state], counts.get(state, 0))
        yield family


@contextmanager
def jobs_in_state(count: Callable[[], dict[str, int]]):
    """``satlas_jobs_in_state`` served while inside (a test process runs several orchestrators in turn)."""
    collector = InState(count)
    REGISTRY.register(collector)
    try:
        yield collector
    finally:
        REGISTRY.unregister(collector)

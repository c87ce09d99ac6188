"""The newest snapshot of every active job this replica wrote, so that a state change builds its
event from what the replica already holds instead of reading the row back.

Reading each changed row back and converting it (timestamps, JSON) was the largest per-job cost of
the orchestrator after the SQL itself. A write learns each changed job's new ``version`` from the
database (RETURNING, or the rows it locked); a snapshot is derived from the held one only when
that one is exactly one version older, so a change made elsewhere (another replica, a restart)
is never papered over: the caller reads those rows instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from satlas.v1 import job_pb2

from satkit.jobs import TERMINAL_STATES


class Snapshots:
    def __init__(self, limit: int = 100_000):
        self.limit = limit  # active jobs held; past it the oldest go (a miss costs one read)
        self._jobs: dict[str, job_pb2.Job] = {}
        self._local = threading.local()  # per thread: the changes of the transaction it is in

    def __len__(self) -> int:
        return len(self._jobs)

    @contextmanager
    def staged(self):
        """Snapshots noted or derived inside are held only once the block ends without an error (its
        transaction committed): a change that was rolled back must never be built on, or the next
        event would carry what no row ever held (another replica may commit that version meanwhile)."""
        if getattr(self._local, "changes", None) is not None:  # nested: part of the outer block
            yield
            return
        self._local.changes = changes = {}
        try:
            yield
        finally:
            self._local.changes = None
        self._hold(changes.values())  # reached only when the block raised nothing

    def note(self, jobs: Iterable[job_pb2.Job]) -> None:
        """Hold the newest snapshots of active jobs and forget finished ones (inside ``staged``: once it
        ends)."""
        changes = getattr(self._local, "changes", None)
        if changes is None:
            self._hold(jobs)
            return
        for job in jobs:
            changes.pop(job.job_id, None)  # re-inserted: applied in the order of the changes
            changes[job.job_id] = job

    def _hold(self, jobs: Iterable[job_pb2.Job]) -> None:
        for job in jobs:
            self._jobs.pop(job.job_id, None)  # re-inserted: the dict stays oldest first
            if job.state not in TERMINAL_STATES:
                self._jobs[job.job_id] = job
        while len(self._jobs) > self.limit:
            del self._jobs[next(iter(self._jobs))]

    def derive(self, job_id: str, version: int, change: Callable[[job_pb2.Job], None]) -> job_pb2.Job | None:
        """The snapshot at ``version`` made from the newest one at ``version - 1`` by ``change``, and
        noted; None when this replica does not hold that one. Snapshots already handed out stay as
        they were: events are published after the commit, from these objects."""
        changes = getattr(self._local, "changes", None)
        held = changes.get(job_id) if changes else None
        if held is None:
            held = self._jobs.get(job_id)
        if held is None or held.version != version - 1 or held.state in TERMINAL_STATES:
            return None
        job = job_pb2.Job()
        job.CopyFrom(held)
        change(job)
        job.version = version
        self.note([job])
        return job

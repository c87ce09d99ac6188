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
        self._local = threading.local()  # per thread: the ids noted in the transaction it is in

    def __len__(self) -> int:
        return len(self._jobs)

    @contextmanager
    def undone_on_failure(self):
        """Around a transaction: if it fails, what was noted or derived in it is dropped again, since it
        was rolled back and must not be built on (another replica may commit that version meanwhile);
        the next change of each of those jobs reads its row. Costs an id a change, not a copy."""
        if getattr(self._local, "journal", None) is not None:  # nested: the outer one undoes
            yield
            return
        self._local.journal = journal = []
        try:
            yield
        except BaseException:
            self.forget(journal)
            raise
        finally:
            self._local.journal = None

    def _record(self, job_ids: Iterable[str]) -> None:
        journal = getattr(self._local, "journal", None)
        if journal is not None:
            journal.extend(job_ids)

    def note(self, jobs: Iterable[job_pb2.Job]) -> None:
        """Hold the newest snapshots of active jobs; forget finished ones."""
        self._record(job.job_id for job in jobs)
        for job in jobs:
            if job.state in TERMINAL_STATES:
                self._jobs.pop(job.job_id, None)
                continue
            self._jobs.pop(job.job_id, None)  # re-inserted: the dict stays oldest first
            self._jobs[job.job_id] = job
        while len(self._jobs) > self.limit:
            del self._jobs[next(iter(self._jobs))]

    def derive(self, job_id: str, version: int, change: Callable[[job_pb2.Job], None]) -> job_pb2.Job | None:
        """The snapshot at ``version`` made from the one held at ``version - 1`` by ``change``, and
        held in its place (as ``note`` would); None when this replica does not hold that one.
        Snapshots already handed out stay as they were: events are published after the commit,
        from these objects."""
        held = self._jobs.pop(job_id, None)
        if held is None or held.version != version - 1:
            if held is not None:
                self._jobs[job_id] = held
            return None
        job = job_pb2.Job()
        job.CopyFrom(held)
        change(job)
        job.version = version
        if job.state not in TERMINAL_STATES:
            self._jobs[job_id] = job  # re-inserted: the dict stays oldest first
        self._record((job_id,))
        return job

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop what is held of these jobs (their next change reads the row)."""
        for job_id in job_ids:
            self._jobs.pop(job_id, None)

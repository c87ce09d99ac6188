"""The newest snapshot of every active job this replica wrote, so that a state change builds its
event from what the replica already holds instead of reading the row back.

Reading each changed row back and converting it (timestamps, JSON) was the largest per-job cost of
the orchestrator after the SQL itself. A write learns each changed job's new ``version`` from the
database (RETURNING, or the rows it locked); a snapshot is derived from the held one only when
that one is exactly one version older, so a change made elsewhere (another replica, a restart)
is never papered over: the caller reads those rows instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from satlas.v1 import job_pb2

from satkit.jobs import TERMINAL_STATES


class Snapshots:
    def __init__(self, limit: int = 100_000):
        self.limit = limit  # active jobs held; past it the oldest go (a miss costs one read)
        self._jobs: dict[str, job_pb2.Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def note(self, jobs: Iterable[job_pb2.Job]) -> None:
        """Hold the newest snapshots of active jobs; forget finished ones."""
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
        return job

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop what is held of these jobs: a transaction that changed them failed, so what it derived
        was rolled back and must not be built on (another replica may commit that version meanwhile);
        the next change of each reads its row."""
        for job_id in job_ids:
            self._jobs.pop(job_id, None)

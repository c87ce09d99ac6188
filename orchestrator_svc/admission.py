"""A bound on the jobs accepted and not yet finished (ORCHESTRATOR_MAX_UNFINISHED): past it,
CreateJobs (so SubmitSeries) answers RESOURCE_EXHAUSTED and writes nothing.

Without it an overload piles up in the database and on the broker for as long as it lasts: the
ingest's own bound only holds submissions it has not handed on. The count is the database's
(every replica's jobs), read every ``RECOUNT_S``; the jobs this replica admits in between are
added to it, so a burst cannot run far past the limit between two counts.
"""

from __future__ import annotations

RECOUNT_S = 0.5


class Admission:
    def __init__(self, limit: int):
        self.limit = limit  # 0: no bound
        self.counted = 0  # unfinished jobs at the last count
        self.since = 0  # admitted here since then

    @property
    def unfinished(self) -> int:
        return self.counted + self.since

    def recount(self, unfinished: int, admitted_before: int | None = None) -> None:
        """``admitted_before``: ``since`` when the count began. What was admitted while it ran may be
        missing from it, so it stays added (dropping it let a burst run 10 % past the limit)."""
        self.counted = unfinished
        self.since -= self.since if admitted_before is None else admitted_before

    def admit(self, jobs: int) -> bool:
        if self.limit and self.unfinished + jobs > self.limit:
            return False
        self.since += jobs
        return True

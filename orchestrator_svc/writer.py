"""Group commit: every job-state write of the orchestrator goes through one writer, and the
writes that wait while a transaction runs share the next one.

Measured before this (py-spy and the job table, 300 jobs/s): about 350 transactions a second,
one per CreateJobs, StartJobs, ReportResults and dispatch round, each carrying two to four jobs;
their fixed cost (a pooled connection, begin, commit, a thread hop) was most of the
orchestrator's CPU. Here the number of transactions follows the database's speed, not the load:
when idle a write runs at once, alone; under load one commit carries everything that arrived
while the previous one ran, with the writes of one kind merged into one statement.

Within a group, writes apply in the order of a job's life (creates, queued marks, starts,
reports, cancels). Every one of them is a conditional change, so any order of writes that were
in flight together is a history a client could have seen. If a group fails, its writes run
again one at a time, so that only a faulty one fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2

from orchestrator_svc.held import ConnectionLost
from orchestrator_svc.store import JobStore
from satkit.queue import TaskJob

log = logging.getLogger(__name__)
CREATE, QUEUED, START, REPORT, CANCEL = "create", "queued", "start", "report", "cancel"
ORDER = (CREATE, QUEUED, START, REPORT, CANCEL)
DURABLE = (CREATE, REPORT, CANCEL)
MAX_GROUP = 512  # writes in one transaction
# QUEUED marks wait this long for another write to share a commit with: alone they were a quarter
# of all transactions at moderate load, and the start of the same jobs usually follows within it.
QUEUED_WAIT_S = 0.02


@dataclass
class Op:
    kind: str
    args: tuple
    future: asyncio.Future = field(repr=False)


@dataclass
class Applied:
    """What a group's transaction did: one result per op, the snapshots to publish (in commit
    order) and the new jobs to dispatch."""

    results: list
    snapshots: list[job_pb2.Job]
    dispatches: list[TaskJob]


def apply_group(store: JobStore, ops: Sequence[Op]) -> Applied:
    """Every op in one transaction (runs in the writer's thread)."""
    try:
        return _apply_group(store, ops)
    except ConnectionLost as exc:  # nothing of it applied: once more, on a new connection
        log.warning("the database connection was lost (%s); applying the group again", exc)
        return _apply_group(store, ops)


def _apply_group(store: JobStore, ops: Sequence[Op]) -> Applied:
    out = Applied([None] * len(ops), [], [])
    by_kind: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        by_kind.setdefault(op.kind, []).append(i)
    # New jobs, cancels and results must be on disk before anyone hears of them (PostgreSQL): a
    # result announced and then lost in a crash was run again and announced again, SUCCEEDED
    # twice in two versions (the chaos soak saw 15 in an hour of PostgreSQL restarts).
    with store.group_transaction(durable=any(op.kind in DURABLE for op in ops)) as conn:
        for kind in ORDER:
            slots = by_kind.get(kind, [])
            if slots:
                results = _APPLY[kind](store, conn, [ops[i] for i in slots], out)
                for i, result in zip(slots, results):
                    out.results[i] = result
    return out


# Each applies a kind's ops (in arrival order) and returns one result per op.

def _create(store, conn, ops, out: Applied) -> list:
    ids, dispatches, snaps = store.create_jobs_in(conn, [s for op in ops for s in op.args[0]])
    out.snapshots.extend(snaps)
    out.dispatches.extend(dispatches)
    results, k = [], 0
    for op in ops:
        results.append(ids[k : k + len(op.args[0])])
        k += len(op.args[0])
    return results


def _queued(store, conn, ops, out: Applied) -> list:
    for op in ops:  # each with the time its message reached the broker
        out.snapshots.extend(store.mark_queued_in(conn, *op.args))
    return [None] * len(ops)


def _start(store, conn, ops, out: Applied) -> list:
    # One statement per worker: the worker's name is bound into it.
    started: dict[str, set[str]] = {}  # per worker: what its own statement claimed
    for worker in dict.fromkeys(op.args[1] for op in ops):
        ids, snaps = store.start_jobs_in(conn, [j for op in ops if op.args[1] == worker for j in op.args[0]], worker)
        out.snapshots.extend(snaps)
        started[worker] = set(ids)
    return [[j for j in op.args[0] if j in started[op.args[1]]] for op in ops]


def _report(store, conn, ops, out: Applied) -> list:
    snaps = store.report_results_in(conn, [o for op in ops for o in op.args[0]])
    out.snapshots.extend(snaps)
    applied, results = {j.job_id for j in snaps}, []
    for op in ops:  # a job reported by two ops counts for the first
        mine = {o.job_id for o in op.args[0]} & applied
        applied -= mine
        results.append(len(mine))
    return results


def _cancel(store, conn, ops, out: Applied) -> list:
    results = []
    for op in ops:
        job, changed = store.cancel_in(conn, op.args[0])
        out.snapshots.extend(changed)
        results.append(job)
    return results


_APPLY = {CREATE: _create, QUEUED: _queued, START: _start, REPORT: _report, CANCEL: _cancel}


class Writer:
    """Queues writes for the group-commit loop; each call returns once its group committed and
    its snapshots were handed to ``publish`` (and new jobs to ``dispatch``)."""

    def __init__(self, store: JobStore, publish: Callable[[list[job_pb2.Job]], Awaitable[None]],
                 dispatch: Callable[[list[TaskJob]], None] | None = None, max_group: int = MAX_GROUP,
                 queued_wait_s: float = QUEUED_WAIT_S):
        self.store = store
        self.queued_wait_s = queued_wait_s
        self.publish = publish
        self.dispatch = dispatch  # set once the dispatcher exists
        self.max_group = max_group
        self.queue: asyncio.Queue[Op | None] = asyncio.Queue()  # None: stop
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
        self._task: asyncio.Task | None = None
        self._grouping = False  # the loop takes writes from the queue (from start until it sees the stop)
        self.groups = 0  # transactions committed and writes in them (how well writes share)
        self.ops = 0

    # --- the writes --------------------------------------------------------------------------

    async def create_jobs(self, submissions: Sequence[jc.Submission]) -> list[list[str]]:
        return await self._submit(CREATE, list(submissions))

    async def mark_queued(self, job_ids: Sequence[str], at: dt.datetime | None = None) -> None:
        """``at``: when their message reached the broker (the QUEUED time), default now."""
        await self._submit(QUEUED, list(job_ids), at or dt.datetime.now(dt.timezone.utc))

    async def start_jobs(self, job_ids: Sequence[str], worker: str) -> list[str]:
        return await self._submit(START, list(job_ids), worker)

    async def report_results(self, outcomes: Sequence[jc.JobOutcome]) -> int:
        return await self._submit(REPORT, list(outcomes))

    async def cancel(self, job_id: str) -> job_pb2.Job | None:
        return await self._submit(CANCEL, job_id)

    # --- the loop ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._grouping = True
        self._task = asyncio.create_task(self._run(), name="db-writer")

    async def stop(self) -> None:
        """Apply what is queued (the group in hand is never cut short) and stop grouping: a
        write after this (the dispatcher's last queued marks) runs alone, at once."""
        self.queue.put_nowait(None)
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def close(self) -> None:
        try:
            self.thread.submit(self.store.release).result()  # the thread that holds them closes them
        finally:
            self.thread.shutdown(wait=True)

    async def _submit(self, kind: str, *args):
        future = asyncio.get_running_loop().create_future()
        if not self._grouping:  # not started, or stopping: the loop takes nothing more from the queue
            await self._apply([Op(kind, args, future)])
            return future.result()
        self.queue.put_nowait(Op(kind, args, future))
        # shield: a caller that gives up still leaves its write to complete, never half-applied
        return await asyncio.shield(future)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            ops = [await self.queue.get()]
            while len(ops) < self.max_group and not self.queue.empty():
                ops.append(self.queue.get_nowait())
            if self.queued_wait_s > 0 and all(op is not None and op.kind == QUEUED for op in ops):
                try:  # only marks: wait a little for a write to share the commit with
                    ops.append(await asyncio.wait_for(self.queue.get(), self.queued_wait_s))
                except TimeoutError:
                    pass
                while len(ops) < self.max_group and not self.queue.empty():
                    ops.append(self.queue.get_nowait())
            if None in ops:  # stop(): apply what came before it and whatever is still queued
                stopping = True
                # From here a write runs alone: one queued while the last groups apply (the
                # dispatcher marking what they dispatched) would wait for a loop that has ended.
                self._grouping = False
                ops = [op for op in ops if op is not None]
                while not self.queue.empty():
                    ops.append(self.queue.get_nowait())
            for i in range(0, len(ops), self.max_group):
                await self._apply(ops[i : i + self.max_group])

    async def _apply(self, ops: list[Op]) -> None:
        loop = asyncio.get_running_loop()
        try:
            applied = await loop.run_in_executor(self.thread, apply_group, self.store, ops)
        except Exception as exc:
            if len(ops) == 1:
                if not ops[0].future.done():
                    ops[0].future.set_exception(exc)
                return
            log.warning("a group of %d writes failed (%s); applying them one at a time", len(ops), exc)
            for op in ops:
                await self._apply([op])
            return
        self.groups += 1
        self.ops += len(ops)
        await self.publish(applied.snapshots)
        if applied.dispatches and self.dispatch is not None:
            self.dispatch(applied.dispatches)
        for op, result in zip(ops, applied.results):
            if not op.future.done():
                op.future.set_result(result)

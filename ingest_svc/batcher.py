"""Gathers concurrent submissions into one CreateJobs call (one transaction, one round trip).
A batch is gathered once a call may start: while a call is out, submissions queue and the next
batch takes them all, so batches fill up by themselves under load, and an idle ingest sends a
submission at once (``max_wait_s``, default 0, makes it wait for company). A second call (up to
``max_in_flight``) goes while one is out only when a whole batch (``max_batch``) is waiting: at a
busy moment one more call would only split what the next one carries (more calls, each costing
both services CPU: p95 at 1,000 jobs/s rose from 53 to 61–66 ms with two calls always allowed),
but in an overload one call at a time, each waiting for a busy writer's commit, left
submissions queued for seconds.

Calls go at most one per ``gap_s`` (10 ms): at a third of the mesh's maximum a call took a few
milliseconds, so sending whenever none was out made ~200 calls a second of one or two series each,
and each unary call costs the orchestrator more than the jobs it carries (gRPC's callbacks were a
third of its time). A submission after a quieter spell than the gap still goes at once.

When the orchestrator refuses a call for being full (RESOURCE_EXHAUSTED: its bound on unfinished
jobs), new submissions get its answer for ``SHED_S`` without asking again (a future that already
failed as their call would have, so callers pass it on as any refused call): under
an overload most requests are refused, and sending each to the orchestrator only to hear no spends
the CPU that the accepted ones and the answers need. The orchestrator recounts its unfinished jobs
every 0.5 s, so a shorter wait refuses little that it would have taken. (With 256 jobs a message
the overload test's slowest answer, at three times the maximum, went from 1–2 s to 9–13 s; with
both changes here it was 1.6–6.1 s in six runs.)

A BatchSubmitSeries call's submissions are one item here, never split between calls, so that they
are created in one transaction: all of them or none.

Deadlines travel on: the call gets the latest deadline of the submissions in it (capped), and a
submission whose caller has gone (deadline passed, call cancelled) is left out of the batch.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from satlas.internal.v1 import job_control_service_pb2 as jc

log = logging.getLogger(__name__)
SHED_S = 0.1


class Overloaded(Exception):
    """Too many submissions waiting: the caller should slow down."""


class Batcher:
    def __init__(self, create_jobs, *, max_batch: int, max_wait_s: float, max_in_flight: int, max_pending: int,
                 max_timeout_s: float = 30.0, max_batch_bytes: int = 8 * 1024 * 1024, gap_s: float = 0.0):
        self.create_jobs = create_jobs  # async (CreateJobsRequest, timeout) -> CreateJobsResponse
        self.max_timeout_s = max_timeout_s
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.gap_s = gap_s  # a call goes no sooner than this after the last one began (0: at once)
        self._last_call = float("-inf")
        self.max_pending = max_pending
        # A batch stays well inside the orchestrator's message limit (INTERNAL_MAX_MESSAGE_BYTES):
        # with one call in flight, a busy stream's next batch could otherwise grow past it.
        self.max_batch_bytes = max_batch_bytes
        self._held: tuple | None = None  # the item that would have made the last batch too big
        # (submissions, future, deadline, single): one submission (its future gets its job ids), or a
        # BatchSubmitSeries call's (the future gets a list of job ids per submission)
        self.queue: asyncio.Queue[tuple[list[jc.Submission], asyncio.Future, float, bool]] = asyncio.Queue()
        self.waiting = 0  # submissions in the queue or held
        self.max_in_flight = max(1, max_in_flight)
        self.in_flight = 0  # calls out
        self._changed = asyncio.Event()  # a call ended, or a whole batch is waiting
        self._task: asyncio.Task | None = None
        self._calls: set[asyncio.Task] = set()
        self.backlog = 0  # submissions queued or in a call, not yet answered
        self._refused: tuple[float, str] = (float("-inf"), "")  # until when, and the orchestrator's words

    def submit(self, submission: jc.Submission, time_remaining: float | None = None) -> asyncio.Future:
        """A future of the submission's job ids; ``time_remaining`` is the caller's deadline."""
        return self._queue([submission], time_remaining, True)

    def submit_all(self, submissions: list[jc.Submission], time_remaining: float | None = None) -> asyncio.Future:
        """A future of the job ids of each of ``submissions``, created together in one call."""
        return self._queue(submissions, time_remaining, False)

    def _queue(self, submissions: list[jc.Submission], time_remaining: float | None, single: bool) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if loop.time() < self._refused[0]:
            future.set_exception(_full(self._refused[1]))
            return future
        if self.waiting >= self.max_pending:
            raise Overloaded(f"{self.waiting} submissions waiting")
        n = len(submissions)
        self.backlog += n
        self.waiting += n
        future.add_done_callback(lambda _: self._answered(n))
        budget = self.max_timeout_s if time_remaining is None else min(time_remaining, self.max_timeout_s)
        self.queue.put_nowait((submissions, future, loop.time() + budget, single))
        if self.waiting >= self.max_batch:
            self._changed.set()
        return future

    def _answered(self, n: int) -> None:
        self.backlog -= n

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._calls, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            # Wait for the call to be allowed before gathering: what arrives while calls are out joins
            # the next batch, not the one after. Past the first call, only a whole batch may go.
            while self.in_flight >= self.max_in_flight or (self.in_flight and self.waiting < self.max_batch):
                self._changed.clear()
                await self._changed.wait()
            batch = await self._gather()
            self._last_call = asyncio.get_running_loop().time()
            self.in_flight += 1
            call = asyncio.create_task(self._send(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _gather(self) -> list:
        """The next item and what joins it: all that is queued, up to the batch and byte limits,
        and what arrives within ``max_wait_s``, or until ``gap_s`` after the last call began. An item
        goes whole: the first one even past the limits."""
        loop = asyncio.get_running_loop()
        first = await self._take()
        batch, count, size = [first], len(first[0]), _bytes(first[0])
        deadline = max(loop.time() + self.max_wait_s, self._last_call + self.gap_s)
        while count < self.max_batch:
            if self.queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._take(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._take_nowait()
            count += len(item[0])
            size += _bytes(item[0])
            if size > self.max_batch_bytes or count > self.max_batch:
                self._held = item  # first of the next batch, and still waiting
                self.waiting += len(item[0])
                break
            batch.append(item)
        return batch

    async def _take(self) -> tuple:
        """The held item first, else the next queued."""
        item, self._held = self._held or await self.queue.get(), None
        self.waiting -= len(item[0])
        return item

    def _take_nowait(self) -> tuple:
        item = self.queue.get_nowait()
        self.waiting -= len(item[0])
        return item

    async def _send(self, batch) -> None:
        loop = asyncio.get_running_loop()
        late = [b for b in batch if not b[1].done() and b[2] <= loop.time()]
        for _, future, _, _ in late:  # their time ran out waiting here: answered, not left hanging
            future.set_exception(_deadline_passed())
        batch = [b for b in batch if not b[1].done()]  # callers still waiting
        try:
            if not batch:
                return
            timeout = max(b[2] for b in batch) - loop.time()
            request = jc.CreateJobsRequest(submissions=[s for b in batch for s in b[0]])
            response = await self.create_jobs(request, timeout)
            if len(response.created) != len(request.submissions):  # every caller hears it, none is left waiting
                raise RuntimeError(f"CreateJobs answered {len(response.created)} of {len(request.submissions)}")
            created = iter(response.created)
            for subs, future, _, single in batch:
                ids = [list(next(created).job_ids) for _ in subs]
                if not future.done():
                    future.set_result(ids[0] if single else ids)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self._refused = (loop.time() + SHED_S, exc.details())
            for _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self.in_flight -= 1
            self._changed.set()


def _bytes(submissions: list[jc.Submission]) -> int:
    return sum(s.ByteSize() for s in submissions)


def _full(details: str) -> grpc.aio.AioRpcError:
    """The orchestrator's refusal again (a new error each time: one raised over and over keeps
    every traceback it went through)."""
    return grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                details=details)


def _deadline_passed() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                details="the submission waited past its deadline for the orchestrator")

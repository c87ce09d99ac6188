"""Hands committed jobs to Celery, several per message, after the commit that stored them.

Publishing runs in one thread with Celery's pooled producer (no connection per job). A
publish that fails leaves its jobs PENDING; the reconciler dispatches them again.

Messages fill up only when the mesh is busy, so that under load one message, one StartJobs, one
ReportResults and one transaction each carry many jobs instead of one series' worth:
- while ``ahead`` published messages wait to be started (StartJobs says when one is), the workers
  are behind: jobs wait up to ``linger_s`` for company;
- while any message is unfinished (ReportResults says when one is), messages go out at most one
  per ``gap_s``: every message costs the mesh about the same CPU whatever it carries (py-spy and
  /proc: 13-25 ms over all processes on 2 cores), so at moderate load a stream of one-series
  messages saturated both cores and every hop queued for them. With nothing unfinished (the
  workers idle), a job goes out at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from satkit import tracing
from satkit.queue import QUEUE, TASK_NAME, TASK_SERIALIZER, TaskJob, encode_task

log = logging.getLogger(__name__)


class Backlog:
    """Published messages not yet ``done`` (started, or finished: the dispatcher keeps one of each).
    A message this replica never hears of again (another replica heard it, a worker died) stops
    counting after ``stale_s``."""

    def __init__(self, stale_s: float = 10.0):
        self.stale_s = stale_s
        self._messages: dict[int, tuple[float, list[str]]] = {}  # number -> (published at, job ids)
        self._message_of: dict[str, int] = {}
        self._next = 0

    def published(self, job_ids: list[str], at: float) -> None:
        self.waiting(at)  # prunes stale ones: a replica that never hears of starts stays bounded
        self._next += 1
        self._messages[self._next] = (at, job_ids)
        for j in job_ids:
            self._message_of[j] = self._next

    def done(self, job_ids) -> None:
        for j in job_ids:
            self._forget(self._message_of.get(j))

    started = unpublished = done

    def waiting(self, now: float) -> int:
        while self._messages:
            number, (at, _) = next(iter(self._messages.items()))  # oldest first: dicts keep order
            if now - at <= self.stale_s:
                break
            self._forget(number)
        return len(self._messages)

    def _forget(self, number: int | None) -> None:
        _, job_ids = self._messages.pop(number, (0.0, ()))
        for j in job_ids:
            if self._message_of.get(j) == number:  # a re-dispatched job may be in a newer message
                del self._message_of[j]


class Dispatcher:
    def __init__(self, celery: Celery, jobs_per_message: int, on_published, ahead: int = 2,
                 linger_s: float = 0.05, gap_s: float = 0.0):
        self.celery = celery
        self.jobs_per_message = max(1, jobs_per_message)
        self.on_published = on_published  # async (job_ids, at) -> None: mark them QUEUED as of ``at``
        self.ahead = ahead  # 0: never wait
        self.linger_s = linger_s
        self.gap_s = gap_s  # 0: no pacing
        self.backlog = Backlog()  # published, not started
        self.unfinished = Backlog(stale_s=30.0)  # published, not reported
        self._last_send = float("-inf")
        self.queue: asyncio.Queue[TaskJob | None] = asyncio.Queue()  # None: wake up, we are stopping
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="celery-publish")
        self._task: asyncio.Task | None = None
        self._carry: list[TaskJob] = []  # the part of a busy round that was not a whole message
        self._stopping = False
        self._marking: set[asyncio.Future] = set()  # QUEUED marks in flight

    def submit(self, dispatches: list[TaskJob]) -> None:
        for d in dispatches:
            self.queue.put_nowait(d)

    def started(self, job_ids) -> None:
        """A worker has claimed these jobs (StartJobs): their message left the queue."""
        self.backlog.done(job_ids)

    def finished(self, job_ids) -> None:
        """A worker reported these jobs (ReportResults): their message is done."""
        self.unfinished.done(job_ids)

    def _busy(self, now: float) -> bool:
        return self.ahead > 0 and not self._stopping and self.backlog.waiting(now) >= self.ahead

    def _hold(self, now: float, linger_until: float) -> float:
        """Until when the batch in hand may wait for company (past: it goes now)."""
        if self._busy(now):
            return linger_until
        if self.gap_s > 0 and not self._stopping and self.unfinished.waiting(now):
            return self._last_send + self.gap_s
        return now

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Publish the batch in hand and what is waiting (best effort, without lingering), then
        stop; the reconciler covers the rest."""
        self._stopping = True
        self.queue.put_nowait(None)
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except Exception as exc:
                log.warning("dispatch at shutdown failed: %s", exc)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._drain_once(block=False), 5)
        except Exception as exc:
            log.warning("dispatch at shutdown failed: %s", exc)
        await asyncio.gather(*self._marking, return_exceptions=True)
        self.thread.shutdown(wait=False)

    async def queue_depth(self) -> int | None:
        """Messages waiting on the broker's queue (None: the broker did not say)."""
        def depth() -> int:
            with self.celery.connection_for_write() as conn:
                return conn.default_channel.queue_declare(QUEUE, passive=True).message_count

        try:
            return await asyncio.get_running_loop().run_in_executor(self.thread, depth)
        except Exception as exc:
            # No such queue: never declared, or (Redis) emptied, which deletes the list.
            if "NOT_FOUND" in str(exc) or type(exc).__name__ == "NotFound":
                return 0
            log.warning("queue depth unknown: %s", exc)
            return None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._drain_once(block=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch loop error")
                await asyncio.sleep(0.5)

    def _take(self, batch: list[TaskJob], item: TaskJob | None = None) -> None:
        """``item`` and whatever else is waiting, up to 64 messages' worth."""
        if item is not None:
            batch.append(item)
        while not self.queue.empty() and len(batch) < 64 * self.jobs_per_message:
            if (d := self.queue.get_nowait()) is not None:
                batch.append(d)

    async def _drain_once(self, block: bool) -> None:
        n = self.jobs_per_message
        batch, self._carry = self._carry, []
        self._take(batch, await self.queue.get() if block and not batch else None)
        if not batch:
            return
        loop = asyncio.get_running_loop()
        # Busy: let the message fill while it is (checked every 5 ms), at most linger_s.
        deadline = loop.time() + self.linger_s
        while block and len(batch) < n:
            remaining = min(self._hold(loop.time(), deadline), deadline) - loop.time()
            if remaining <= 0:
                break
            try:
                self._take(batch, await asyncio.wait_for(self.queue.get(), min(remaining, 0.005)))
            except TimeoutError:
                continue
        if block and len(batch) > n and len(batch) % n and self._busy(loop.time()):
            # Still busy: whole messages only; the rest starts the next round (one more linger at most).
            whole = len(batch) - len(batch) % n
            batch, self._carry = batch[:whole], batch[whole:]
        chunks = [batch[i : i + n] for i in range(0, len(batch), n)]
        ids = [d.job_id for d in batch]
        self._last_send = loop.time()
        for chunk in chunks:  # counted before a worker can possibly start them
            self.backlog.published([d.job_id for d in chunk], self._last_send)
            self.unfinished.published([d.job_id for d in chunk], self._last_send)
        try:
            await loop.run_in_executor(self.thread, self._publish, chunks)
        except Exception as exc:
            self.backlog.unpublished(ids)
            self.unfinished.unpublished(ids)
            log.warning("could not publish %d jobs (they stay PENDING for the reconciler): %s", len(batch), exc)
            return
        # Marked QUEUED in the background: the next round need not wait for that commit (a job a
        # worker starts first stays RUNNING: the mark applies only to PENDING jobs).
        marking = asyncio.ensure_future(self.on_published(ids, dt.datetime.now(dt.timezone.utc)))
        self._marking.add(marking)
        marking.add_done_callback(self._marked)

    def _marked(self, task: asyncio.Future) -> None:
        self._marking.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not mark jobs QUEUED (the reconciler will): %s", task.exception())

    def _publish(self, chunks: list[list[TaskJob]]) -> None:
        with self.celery.producer_or_acquire() as producer:
            for chunk in chunks:
                # Traced: the message is a span of its own, linked to the jobs it carries; the
                # worker's span of it continues from the message's headers.
                traced = [j.traceparent for j in chunk if tracing.sampled(j.traceparent)] if tracing.enabled() else []
                span = tracing.start("orchestrator.dispatch", kind="producer", links=traced,
                                     attributes={"satlas.batch_size": len(chunk)}) if traced else None
                self.celery.send_task(
                    TASK_NAME,
                    args=[encode_task(chunk)],
                    serializer=TASK_SERIALIZER,
                    producer=producer,
                    argsrepr=f"[{len(chunk)} jobs: {chunk[0].job_id} ...]",  # no series in Flower/logs
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
                    headers={"traceparent": tracing.traceparent_of(span)} if span is not None else None,
                )
                if span is not None:
                    tracing.finish(span)

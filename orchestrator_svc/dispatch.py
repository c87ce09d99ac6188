"""Hands committed jobs to Celery, several per message, after the commit that stored them.

Publishing runs in one thread with Celery's pooled producer (no connection per job). A
publish that fails leaves its jobs PENDING; the reconciler dispatches them again.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from orchestrator_svc.store import Dispatch
from satkit.queue import QUEUE, TASK_NAME

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, celery: Celery, jobs_per_message: int, on_published):
        self.celery = celery
        self.jobs_per_message = max(1, jobs_per_message)
        self.on_published = on_published  # async (job_ids) -> None: mark them QUEUED
        self.queue: asyncio.Queue[Dispatch] = asyncio.Queue()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="celery-publish")
        self._task: asyncio.Task | None = None

    def submit(self, dispatches: list[Dispatch]) -> None:
        for d in dispatches:
            self.queue.put_nowait(d)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Publish what is waiting (best effort), then stop; the reconciler covers the rest."""
        try:
            await asyncio.wait_for(self._drain_once(block=False), 5)
        except Exception as exc:
            log.warning("dispatch at shutdown failed: %s", exc)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
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
        while True:
            try:
                await self._drain_once(block=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch loop error")
                await asyncio.sleep(0.5)

    async def _drain_once(self, block: bool) -> None:
        batch: list[Dispatch] = []
        if block:
            batch.append(await self.queue.get())
        while not self.queue.empty() and len(batch) < 64 * self.jobs_per_message:
            batch.append(self.queue.get_nowait())
        if not batch:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.thread, self._publish, batch)
        except Exception as exc:
            log.warning("could not publish %d jobs (they stay PENDING for the reconciler): %s", len(batch), exc)
            return
        await self.on_published([d.job_id for d in batch])

    def _publish(self, batch: list[Dispatch]) -> None:
        n = self.jobs_per_message
        with self.celery.producer_or_acquire() as producer:
            for i in range(0, len(batch), n):
                chunk = batch[i : i + n]
                self.celery.send_task(
                    TASK_NAME,
                    args=[[d.as_message() for d in chunk]],
                    producer=producer,
                    argsrepr=f"[{len(chunk)} jobs: {chunk[0].job_id} ...]",  # no series in Flower/logs
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
                )

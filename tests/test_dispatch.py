"""orchestrator_svc.dispatch against real brokers (the machine's Redis and RabbitMQ): jobs go out
several per message after their commit, and the queue depth the reconciler consults is right."""

from __future__ import annotations

import asyncio

import pytest
from kombu import Connection

from orchestrator_svc.dispatch import Backlog, Dispatcher
from orchestrator_svc.store import Dispatch
from satkit.queue import QUEUE, make_celery

BROKERS = {"redis": "redis://127.0.0.1:6379/14", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}


def purge(url: str) -> None:
    with Connection(url, connect_timeout=5) as conn:
        try:
            conn.default_channel.queue_purge(QUEUE)
        except Exception:  # no such queue yet
            pass


async def depth_becomes(dispatcher: Dispatcher, expected: int, timeout: float = 5.0) -> bool:
    seen = None
    async with asyncio.timeout(timeout):
        while (seen := await dispatcher.queue_depth()) != expected:
            await asyncio.sleep(0.05)
    return seen == expected


@pytest.mark.parametrize("broker", sorted(BROKERS))
async def test_jobs_go_out_several_per_message_and_the_depth_counts_them(broker):
    url = BROKERS[broker]
    purge(url)
    published: list[list[str]] = []

    async def on_published(job_ids):
        published.append(job_ids)

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), 4, on_published)
    await dispatcher.start()
    try:
        dispatcher.submit([Dispatch(f"job-{i}", "m", [1.0, 2.0]) for i in range(10)])
        async with asyncio.timeout(10):
            while sum(map(len, published)) < 10:
                await asyncio.sleep(0.02)
        assert [j for batch in published for j in batch] == [f"job-{i}" for i in range(10)]
        # RabbitMQ counts a message once it is routed, which can trail the publish a little.
        assert await depth_becomes(dispatcher, 3)  # 4 + 4 + 2 jobs
        purge(url)
        assert await depth_becomes(dispatcher, 0)
    finally:
        await dispatcher.stop()
        purge(url)


def message_sizes(url: str) -> list[int]:
    """Jobs in each message waiting on the queue, in order (consumes them)."""
    sizes = []
    with Connection(url, connect_timeout=5) as conn:
        queue = conn.SimpleQueue(QUEUE)
        try:
            while True:
                message = queue.get(timeout=0.5)
                sizes.append(len(message.payload[0][0]))
                message.ack()
        except queue.Empty:
            return sizes
        finally:
            queue.close()


async def test_messages_fill_up_only_while_the_workers_are_busy():
    url = BROKERS["redis"]
    purge(url)
    published: list[list[str]] = []

    async def on_published(job_ids):
        published.append(job_ids)

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), 8, on_published, ahead=2, linger_s=0.3)
    await dispatcher.start()

    async def trickle(first: int, n: int) -> None:  # one series' jobs at a time, as CreateJobs hands them
        for i in range(first, first + n, 2):
            dispatcher.submit([Dispatch(f"job-{i}", "m", [1.0]), Dispatch(f"job-{i + 1}", "m", [1.0])])
            await asyncio.sleep(0.01)

    async def all_out(n: int) -> None:
        async with asyncio.timeout(10):
            while sum(map(len, published)) < n:
                await asyncio.sleep(0.01)

    try:
        await trickle(0, 4)  # idle workers: each series goes at once
        await all_out(4)
        assert dispatcher.backlog.waiting(asyncio.get_running_loop().time()) == 2
        await trickle(4, 16)  # two messages wait to be started: the next ones fill to 8 jobs
        await all_out(20)
        dispatcher.started([f"job-{i}" for i in range(20)])  # a worker took them all
        await trickle(20, 2)
        await all_out(22)
        assert message_sizes(url) == [2, 2, 8, 8, 2]
    finally:
        await dispatcher.stop()
        purge(url)


def test_backlog_counts_unstarted_messages_and_forgets_stale_ones():
    b = Backlog(stale_s=10)
    b.published(["a", "b"], at=0)
    b.published(["c"], at=5)
    assert b.waiting(now=6) == 2
    b.started(["b"])  # one job of a message: the whole message was taken
    assert b.waiting(now=6) == 1
    b.started(["unknown"])
    assert b.waiting(now=14.9) == 1
    assert b.waiting(now=15.1) == 0  # never heard of: it stops counting
    b.published(["d"], at=20)
    b.unpublished(["d"])
    assert b.waiting(now=20) == 0

"""orchestrator_svc.dispatch against real brokers (the machine's Redis and RabbitMQ): jobs go out
several per message after their commit, and the queue depth the reconciler consults is right."""

from __future__ import annotations

import asyncio

import pytest
from kombu import Connection

from orchestrator_svc.dispatch import Dispatcher
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

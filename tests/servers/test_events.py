"""orchestrator_svc.events against the machine's Redis: what one replica publishes, every
replica relays, once each and in order (the publisher to its own watchers at once, not again when
its batch comes back from the channel), including what was queued when it stopped."""

from __future__ import annotations

import asyncio
import uuid

from satlas.v1 import job_pb2

from orchestrator_svc import metrics
from orchestrator_svc.events import CHECK_S, EventHub, by_size

REDIS_URL = "redis://127.0.0.1:6379/0"


def jobs(*ids: str, version: int = 1) -> list[job_pb2.Job]:
    return [job_pb2.Job(job_id=i, version=version) for i in ids]


async def received(sub, n: int, timeout: float = 5.0) -> list[tuple[str, int]]:
    got: list[tuple[str, int]] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            got += [(j.job_id, j.version) for j in await sub.get()]
    return got


async def test_every_replica_relays_each_event_once_in_order():
    channel = f"satlas:test-events:{uuid.uuid4().hex}"
    a, b = EventHub(REDIS_URL, channel), EventHub(REDIS_URL, channel)
    for hub in (a, b):
        await hub.start()
        await asyncio.wait_for(hub.connected.wait(), 5)
    try:
        with a.subscribe() as on_a, b.subscribe() as on_b:
            expected = []
            for k in range(50):  # many small transactions, published back to back
                batch = jobs(f"job-{k}", f"job-{k}b", version=k)
                expected += [(j.job_id, j.version) for j in batch]
                await a.publish(batch)
            assert await received(on_a, 100) == expected
            assert await received(on_b, 100) == expected
            assert await on_b.get(timeout=0.3) is None  # nothing twice
            assert await on_a.get(timeout=0.3) is None  # not even where it came from
    finally:
        await a.stop()
        await b.stop()


async def test_stop_sends_what_was_still_queued():
    channel = f"satlas:test-events:{uuid.uuid4().hex}"
    listener, publisher = EventHub(REDIS_URL, channel), EventHub(REDIS_URL, channel)
    await listener.start()
    await asyncio.wait_for(listener.connected.wait(), 5)
    await publisher.start()
    try:
        with listener.subscribe() as sub:
            await publisher.publish(jobs("last-1", "last-2"))
            await publisher.stop()  # before its publisher task had a turn
            assert await received(sub, 2) == [("last-1", 1), ("last-2", 1)]
    finally:
        await listener.stop()


async def test_a_replica_alone_publishes_nothing_and_one_that_joins_hears_everything_after_its_start():
    channel = f"satlas:test-events:{uuid.uuid4().hex}"
    alone, joining = EventHub(REDIS_URL, channel), EventHub(REDIS_URL, channel)
    await alone.start()
    try:
        async with asyncio.timeout(5):
            while alone.others:
                await asyncio.sleep(CHECK_S)
        published = metrics.EVENTS_PUBLISHED._value.get()
        with alone.subscribe() as own:
            await alone.publish(jobs("alone"))
            assert await received(own, 1) == [("alone", 1)]  # its own watchers still hear it at once
            await asyncio.sleep(3 * CHECK_S)
        assert metrics.EVENTS_PUBLISHED._value.get() == published  # and no PUBLISH went out
        await joining.start()  # returns once the one already there has seen it
        with joining.subscribe() as on_joining:
            await alone.publish(jobs("after the join"))
            assert await received(on_joining, 1) == [("after the join", 1)]
        assert alone.others
    finally:
        await alone.stop()
        await joining.stop()


def test_by_size_keeps_the_order_and_cuts_before_a_run_would_pass_the_limit():
    batch = [job_pb2.Job(job_id=str(k) * n) for k, n in enumerate((10, 20, 30, 200, 5))]
    assert [j.ByteSize() for j in batch] == [12, 22, 32, 203, 7]
    runs = by_size(batch, 70)
    assert runs == [batch[:3], batch[3:4], batch[4:]]  # 66 bytes; one over the limit alone; the rest
    assert by_size(batch, 10_000) == [batch] and by_size([], 70) == []


async def test_take_waiting_gives_every_queued_event_in_order():
    hub = EventHub(REDIS_URL)
    with hub.subscribe() as sub:
        await hub.publish(jobs("a", "b"))
        await hub.publish(jobs("c"))
        await hub.publish(jobs("d"))
        first = await sub.get()
        assert [j.job_id for j in first + sub.take_waiting()] == ["a", "b", "c", "d"]
        assert sub.take_waiting() == []
    await hub.redis.aclose()

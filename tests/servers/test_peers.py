"""orchestrator_svc.peers against the machine's Redis: when a replica stops beating, exactly one
survivor re-sends the window its unpublished changes fall in; a replica that leaves cleanly is
not re-sent for; the published mark holds back while events wait."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from satlas.v1 import job_pb2

from orchestrator_svc.events import EventHub
from orchestrator_svc.peers import MARGIN_S, Peers

REDIS_URL = "redis://127.0.0.1:6379/0"
BEAT_S, DEAD_AFTER_S = 0.05, 0.4


class Replica:
    """A hub and its beat; ``replays`` are the windows it re-sent for others."""

    def __init__(self, channel: str):
        self.hub = EventHub(REDIS_URL, channel)
        self.replays: list[tuple[float, float]] = []
        self.peers = Peers(self.hub, self._replay, beat_s=BEAT_S, dead_after_s=DEAD_AFTER_S)

    async def _replay(self, since, until) -> int:
        self.replays.append((since.timestamp(), until.timestamp()))
        return 0

    async def start(self) -> "Replica":
        await self.hub.start()
        await self.peers.start()
        return self

    async def die(self) -> None:
        """As a SIGKILL leaves it: no more beats, no leaving."""
        await self.peers.stop()

    async def stop(self) -> None:
        await self.peers.stop()
        await self.hub.stop(last=self.peers.leave)


@pytest.fixture
async def replicas():
    channel = f"satlas:test-peers:{uuid.uuid4().hex}"
    started: list[Replica] = []

    async def start() -> Replica:
        started.append(await Replica(channel).start())
        return started[-1]

    yield start
    for r in started:
        await r.stop()  # each leaves: the list is empty again


async def beaten(r: Replica) -> tuple[float, float]:
    value = await r.hub.redis.hget(r.peers.members, r.hub.origin)
    through, beat_at = (float(x) for x in value.split())
    return through, beat_at


async def test_one_survivor_resends_the_window_of_a_replica_that_died(replicas):
    dead, a, b = await replicas(), await replicas(), await replicas()
    await asyncio.sleep(3 * BEAT_S)
    await dead.die()
    through, beat_at = await beaten(dead)  # the last beat before it died
    async with asyncio.timeout(5):
        while not (a.replays or b.replays):
            await asyncio.sleep(BEAT_S)
    await asyncio.sleep(DEAD_AFTER_S + 3 * BEAT_S)  # time for a second, wrong, take-over
    windows = a.replays + b.replays
    assert len(windows) == 1, windows
    since, until = windows[0]
    assert since == pytest.approx(through - MARGIN_S, abs=1e-3)
    assert until == pytest.approx(beat_at + DEAD_AFTER_S + MARGIN_S, abs=1e-3)
    assert await a.hub.redis.hget(a.peers.members, dead.hub.origin) is None
    assert dead.replays == []


async def test_a_replica_that_stops_cleanly_is_not_resent_for(replicas):
    leaving, staying = await replicas(), await replicas()
    await asyncio.sleep(3 * BEAT_S)
    await leaving.stop()
    await asyncio.sleep(DEAD_AFTER_S + 5 * BEAT_S)
    assert staying.replays == []
    assert await staying.hub.redis.hget(staying.peers.members, leaving.hub.origin) is None


async def test_the_published_mark_stays_before_what_waits_to_go_out():
    hub = EventHub(REDIS_URL, f"satlas:test-peers:{uuid.uuid4().hex}")  # not started: nothing goes out
    try:
        before = time.time()
        assert hub.published_through() >= before  # nothing waits: everything is out
        await hub.publish([job_pb2.Job(job_id="waiting", version=1)])
        held = hub.published_through()
        await asyncio.sleep(0.05)
        assert hub.published_through() == held <= before
    finally:
        await hub.redis.aclose()


async def test_a_replica_that_died_before_this_one_started_is_forgotten_without_a_resend(replicas):
    before = time.time() - 1  # a replica killed and started again: the new one finds the old entry
    await asyncio.sleep(0.01)
    r = await replicas()
    await r.hub.redis.hset(r.peers.members, "killed", f"{before:.6f} {before:.6f}")
    async with asyncio.timeout(5):
        while await r.hub.redis.hget(r.peers.members, "killed") is not None:
            await asyncio.sleep(BEAT_S)
    assert r.replays == []

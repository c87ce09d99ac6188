"""Replicas keep each other's watchers whole when one dies.

A replica publishes its committed changes to the other replicas a few milliseconds after the
commit (orchestrator_svc.events). Killed in between, it takes those events with it: a watcher on
a survivor would never hear that such a job ended. So every replica beats in Redis, saying up to
when it has published everything; when one stops beating, one survivor (whichever removes its
entry first) re-sends the current state of every job changed in that replica's last unpublished
moments. A watcher may then see a state twice (the same ``version``), never miss one.

Only watchers that were subscribed while it lived could be waiting for those events: a replica
started after the dead one's last beat (the same one restarted, say) only removes its entry. A
watcher whose own replica died re-subscribes and reads what it missed with GetJob. The times
compared are two replicas' clocks: kept in step (NTP), their skew is well inside ``MARGIN_S``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from orchestrator_svc.events import EventHub, bounded

log = logging.getLogger(__name__)
BEAT_S = 1.0
DEAD_AFTER_S = 5.0  # no beat for this long: gone (a paused replica is only re-sent for: harmless)
# A change is stamped before its commit, and a commit done in the database's thread reaches the
# publisher a moment later: re-send from this much before the published mark.
MARGIN_S = 2.0

Replay = Callable[[dt.datetime, dt.datetime], Awaitable[int]]


class Peers:
    """Beats for this replica and re-sends for the replicas that stopped beating.

    ``replay(since, until)`` re-publishes the jobs whose last change falls in that window and
    says how many."""

    def __init__(self, hub: EventHub, replay: Replay, beat_s: float = BEAT_S, dead_after_s: float = DEAD_AFTER_S):
        self.hub, self.replay = hub, replay
        self.beat_s, self.dead_after_s = beat_s, dead_after_s
        self.members = f"{hub.channel}:replicas"  # origin -> "published through, beat at" (epoch seconds)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.started = 0.0  # set by start(): the dead that beat before it are not re-sent for

    def alive_key(self, origin: str) -> str:
        return f"{self.hub.channel}:alive:{origin}"

    async def start(self) -> None:
        self.started = time.time()
        self._task = asyncio.create_task(self._beat_forever(), name="replica-beat")

    async def stop(self) -> None:
        self._stopping = True  # not only the cancel: redis-py can turn one into a connection error
        if self._task:
            self._task.cancel()
            await bounded(asyncio.gather(self._task, return_exceptions=True), "replica beat")

    async def leave(self) -> None:
        """Once everything is published: a replica that stops cleanly leaves nothing to re-send."""
        try:
            await self.hub.redis.hdel(self.members, self.hub.origin)
            await self.hub.redis.delete(self.alive_key(self.hub.origin))
        except Exception as exc:
            log.warning("could not leave the replicas' list: %s", exc)

    async def _beat_forever(self) -> None:
        failing = False
        while not self._stopping:
            try:
                await self.beat()
                if failing:
                    log.info("replica beat: back")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the events cannot go out either (said once)
                if not failing:
                    log.warning("replica beat: %s", exc)
                failing = True
            await asyncio.sleep(self.beat_s)

    async def beat(self) -> None:
        now = time.time()
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.members, self.hub.origin, f"{self.hub.published_through():.6f} {now:.6f}")
            pipe.set(self.alive_key(self.hub.origin), b"1", px=int(self.dead_after_s * 1000))
            pipe.hgetall(self.members)
            _, _, members = await pipe.execute()
        members = {o.decode(): v.decode() for o, v in members.items()}
        others = {o: v for o, v in members.items() if o != self.hub.origin}
        if not others:
            return
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            for origin in others:
                pipe.exists(self.alive_key(origin))
            alive = await pipe.execute()
        for (origin, value), beating in zip(others.items(), alive):
            if not beating and await self.hub.redis.hdel(self.members, origin):  # this replica takes it over
                await self._resend_for(origin, value)

    async def _resend_for(self, origin: str, value: str) -> None:
        through, beat_at = (float(x) for x in value.split())
        if beat_at < self.started:  # none of this replica's watchers was waiting then (a restart)
            log.info("replica %s stopped before this one started: nothing re-sent", origin[:8])
            return
        since = dt.datetime.fromtimestamp(through - MARGIN_S, dt.timezone.utc)
        # It may have committed until its beat ran out, and a stalled loop still commits from its thread.
        until = dt.datetime.fromtimestamp(beat_at + self.dead_after_s + MARGIN_S, dt.timezone.utc)
        n = await self.replay(since, until)
        log.warning("replica %s stopped beating: re-sent %d jobs changed %s to %s", origin[:8], n,
                    since.time().isoformat(timespec="milliseconds"), until.time().isoformat(timespec="milliseconds"))

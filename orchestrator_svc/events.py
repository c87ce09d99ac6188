"""Job events: every committed change goes at once to this replica's own WatchJob/WatchJobs
streams, and once over Redis pub/sub to the other replicas, which relay what they hear to theirs.

Events wait in order for one publisher task, which sends all that is waiting as one
JobEventBatch: when idle a batch is one transaction's events, and under load a PUBLISH
carries many transactions' instead of costing one round trip each. A replica skips the batches
it published itself (``origin``): going round through Redis cost it a receive and a parse of
every event, and its watchers a round trip of latency.

A replica with no one else on the channel (one orchestrator: the default) publishes nothing: the
PUBLISH and its way back cost it a sixth of its CPU at light load, for no one. It looks every
``CHECK_S`` (``PUBSUB NUMSUB``); a replica that joins waits ``JOIN_S`` after subscribing before it
serves, so every replica already there has seen it before its watchers can miss anything."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import redis.asyncio as aioredis
from satlas.internal.v1 import job_events_pb2
from satlas.v1 import job_pb2

from orchestrator_svc import metrics

log = logging.getLogger(__name__)
CHANNEL = "satlas:job-events"
STOP_TIMEOUT_S = 5.0
# After a PUBLISH the next waits this long, gathering what commits meanwhile: the other replicas
# hear of a change up to this much later (this replica's watchers at once), and a busy replica
# makes at most 100 round trips a second instead of one per transaction.
PUBLISH_EVERY_S = 0.01
CHECK_S = 0.1  # how often a replica looks for others on the channel
JOIN_S = 0.5  # a joining replica's wait: many CHECK_S, for a busy event loop's lag


async def bounded(awaitable, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("%s not closed within %.0f s of stopping", what, STOP_TIMEOUT_S)


class Subscription:
    """A watcher's inbox. Bounded: a watcher that falls far behind loses the oldest events
    (``lagged`` says so) instead of growing the orchestrator's memory."""

    def __init__(self, hub: "EventHub", maxsize: int = 2048):
        self.hub = hub
        self.queue: asyncio.Queue[list[job_pb2.Job]] = asyncio.Queue(maxsize)
        self.lagged = 0
        self.ended = False  # the hub is stopping: the watcher should end its stream

    def end(self) -> None:
        self.ended = True
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait([])  # wakes a waiting get()

    def put(self, jobs: list[job_pb2.Job]) -> None:
        if self.queue.full():
            metrics.EVENTS_DROPPED.labels("watcher").inc(len(self.queue.get_nowait()))
            self.lagged += 1
        self.queue.put_nowait(jobs)

    def take_waiting(self) -> list[job_pb2.Job]:
        """Every event queued, at once, in order."""
        jobs = []
        while not self.queue.empty():
            jobs.extend(self.queue.get_nowait())
        return jobs

    async def get(self, timeout: float | None = None) -> list[job_pb2.Job] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.hub.subscribers.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def by_size(jobs: list[job_pb2.Job], limit: int) -> list[list[job_pb2.Job]]:
    """``jobs`` in order, cut into runs of at most ``limit`` serialised bytes (one job over it
    goes alone)."""
    runs: list[list[job_pb2.Job]] = []
    size = limit
    for job in jobs:
        n = job.ByteSize()
        if size + n > limit:
            runs.append([])
            size = 0
        runs[-1].append(job)
        size += n
    return runs


class EventHub:
    def __init__(self, redis_url: str, channel: str = CHANNEL, publish_every_s: float = PUBLISH_EVERY_S):
        # socket_connect_timeout also bounds a disconnect
        self.redis = aioredis.from_url(redis_url, socket_connect_timeout=STOP_TIMEOUT_S)
        self.channel = channel
        self.publish_every_s = publish_every_s
        self.subscribers: set[Subscription] = set()
        self.origin = uuid.uuid4().hex  # this replica, on the batches it publishes
        self._listener: asyncio.Task | None = None
        self._publisher: asyncio.Task | None = None
        self._outbox: list[job_pb2.Job] = []
        self._waiting = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._ending = False
        self._sending = False
        self._through = time.time()
        self.others = True  # someone else listens: publish (until a look says otherwise)
        self._looker: asyncio.Task | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Subscribes and starts publishing; with others on the channel already, waits until they
        have had time to see this one (``JOIN_S``). A Redis that is away does not hold the start."""
        self._listener = asyncio.create_task(self._listen(), name="event-listener")
        self._publisher = asyncio.create_task(self._publish_forever(), name="event-publisher")
        try:
            await asyncio.wait_for(self.connected.wait(), STOP_TIMEOUT_S)
            if await asyncio.wait_for(self._listeners(), STOP_TIMEOUT_S) > 1:
                await asyncio.sleep(JOIN_S)
        except Exception as exc:  # TimeoutError included: the listener goes on trying
            log.warning("event channel not joined yet: %s", exc)
        self._looker = asyncio.create_task(self._look_forever(), name="event-looker")

    async def _listeners(self) -> int:
        return (await self.redis.pubsub_numsub(self.channel))[0][1]

    async def _look_forever(self) -> None:
        while not self._closed:  # not only the cancel: redis-py can turn one into a connection error
            try:  # alone only while this replica's own listener is the one listener
                self.others = not (self.connected.is_set() and await self._listeners() <= 1)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: publishing fails too, and says so
                self.others = True
            await asyncio.sleep(CHECK_S)

    def published_through(self) -> float:
        """A time (epoch seconds) before which every change handed to ``publish`` has gone out
        (orchestrator_svc.peers re-sends from it for a replica that died)."""
        return self._through if self._outbox or self._sending else time.time()

    async def stop(self, last=None) -> None:
        """Publishes what is queued and closes; ``last()`` runs after that send, before the close."""
        # No cancel for the publisher: redis-py can turn a cancel into a connection error, which the
        # publisher logs and outlives (a stop then waited forever). Woken and closed, it sends what
        # is queued and ends.
        self._closed = True  # and the listener does not reconnect
        if self._looker:
            self._looker.cancel()
            await bounded(asyncio.gather(self._looker, return_exceptions=True), "event looker")
        if self._publisher:
            self._waiting.set()
            self._closing.set()
            try:  # bounded: a Redis that stopped answering must not hold the stop forever
                await asyncio.wait_for(asyncio.gather(self._publisher, return_exceptions=True), STOP_TIMEOUT_S)
                await asyncio.wait_for(self._send(), STOP_TIMEOUT_S)  # what was committed last still goes out
            except TimeoutError:
                log.warning("job events not published within %.0f s of stopping", STOP_TIMEOUT_S)
            else:
                if last:
                    await bounded(last(), "leaving")
        # Bounded too: redis-py can wait forever on a socket's close (redis/redis-py#3941).
        if self._listener:
            self._listener.cancel()
            await bounded(asyncio.gather(self._listener, return_exceptions=True), "event listener")
        await bounded(self.redis.aclose(), "Redis client")

    def end_watches(self) -> None:
        """Tell every subscription to end: a stopping server need not wait out its grace period
        for streams that never end by themselves."""
        self._ending = True
        for sub in list(self.subscribers):
            sub.end()

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self.subscribers.add(sub)
        if self._ending:  # a watch that arrives while the server stops ends at once too
            sub.end()
        return sub

    async def publish(self, jobs: list[job_pb2.Job]) -> None:
        """Hand committed changes to this replica's watchers, and queue them for the others (in
        this order, after what is queued) when there are others: alone, the publisher is not woken
        for a batch no one would get."""
        if jobs:
            self._deliver(jobs)
            if self.others:
                self._outbox.extend(jobs)
                self._waiting.set()

    def _deliver(self, jobs: list[job_pb2.Job]) -> None:
        for sub in list(self.subscribers):
            sub.put(jobs)

    async def _publish_forever(self) -> None:
        while not self._closed:
            await self._waiting.wait()
            await self._send()
            if not self._closed:
                try:  # woken early by stop()
                    await asyncio.wait_for(self._closing.wait(), self.publish_every_s)
                except TimeoutError:
                    pass

    async def _send(self) -> None:
        self._waiting.clear()
        taken = time.time()
        jobs, self._outbox = self._outbox, []
        if not jobs:
            return
        payload = job_events_pb2.JobEventBatch(jobs=jobs, origin=self.origin).SerializeToString()
        self._sending = True
        try:
            await self.redis.publish(self.channel, payload)
            self._through = taken
            metrics.EVENTS_PUBLISHED.inc(len(jobs))
        except asyncio.CancelledError:
            self._outbox[:0] = jobs  # stop() sends them
            raise
        except Exception as exc:  # the state is committed; watchers fall back to polling it
            log.warning("could not publish %d job events: %s", len(jobs), exc)
            metrics.EVENTS_DROPPED.labels("publish").inc(len(jobs))
        finally:
            self._sending = False

    async def _listen(self) -> None:
        delay = 0.2
        while not self._closed:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.connected.set()
                    delay = 0.2
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        batch = job_events_pb2.JobEventBatch.FromString(message["data"])
                        if batch.origin != self.origin:
                            self._deliver(list(batch.jobs))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                if self._closed:
                    return
                log.warning("event channel lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

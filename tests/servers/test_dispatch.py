"""orchestrator_svc.dispatch against real brokers (the machine's Redis and RabbitMQ): jobs go out
several per message after their commit, and the queue depth the reconciler consults is right."""

from __future__ import annotations

import asyncio

import pytest
from kombu import Connection
from support import queued_tasks

from orchestrator_svc.dispatch import Backlog, Dispatcher
from satkit.queue import QUEUE, TaskJob, decode_task, make_celery

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

    async def on_published(job_ids, at):
        published.append(job_ids)

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), 4, on_published)
    await dispatcher.start()
    try:
        dispatcher.submit([TaskJob(job_id=f"job-{i}", model_name="m", values=[1.0, 2.0]) for i in range(10)])
        async with asyncio.timeout(10):
            while sum(map(len, published)) < 10:
                await asyncio.sleep(0.02)
        assert [j for batch in published for j in batch] == [f"job-{i}" for i in range(10)]
        # RabbitMQ counts a message once it is routed, which can trail the publish a little.
        assert await depth_becomes(dispatcher, 3)  # 4 + 4 + 2 jobs
        first = first_message(url)
        assert [(j.job_id, j.model_name, list(j.values)) for j in first] == [
            (f"job-{i}", "m", [1.0, 2.0]) for i in range(4)]
        purge(url)
        assert await depth_becomes(dispatcher, 0)
    finally:
        await dispatcher.stop()
        purge(url)


def first_message(url: str):
    """The jobs of the message at the head of the queue (a RunJobsTask in msgpack; left queued)."""
    with Connection(url, connect_timeout=5) as conn:
        queue = conn.SimpleQueue(QUEUE, accept=["msgpack"])
        try:
            message = queue.get(timeout=2)
            assert message.content_type == "application/x-msgpack"
            payload = message.payload[0][0]  # args: (RunJobsTask,)
            message.requeue()
            return decode_task(payload)
        finally:
            queue.close()


def message_sizes(url: str) -> list[int]:
    """Jobs in each message waiting on the queue, in order (consumes them)."""
    return [len(task) for task in queued_tasks(url)]


async def test_messages_fill_up_only_while_the_workers_are_busy():
    url = BROKERS["redis"]
    purge(url)
    published: list[list[str]] = []

    async def on_published(job_ids, at):
        published.append(job_ids)

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), 8, on_published, ahead=2, linger_s=0.3)
    await dispatcher.start()

    async def trickle(first: int, n: int) -> None:  # one series' jobs at a time, as CreateJobs hands them
        for i in range(first, first + n, 2):
            dispatcher.submit([TaskJob(job_id=f"job-{i}", model_name="m", values=[1.0]), TaskJob(job_id=f"job-{i + 1}", model_name="m", values=[1.0])])
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


async def busy_dispatcher(url: str, published: list, n: int = 8, linger_s: float = 0.3) -> Dispatcher:
    """A started dispatcher that believes two messages wait to be started."""
    async def on_published(job_ids, at):
        published.append((asyncio.get_running_loop().time(), job_ids))

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), n, on_published, ahead=2, linger_s=linger_s)
    now = asyncio.get_running_loop().time()
    dispatcher.backlog.published(["x1"], now)
    dispatcher.backlog.published(["x2"], now)
    await dispatcher.start()
    return dispatcher


def jobs(first: int, n: int) -> list[TaskJob]:
    return [TaskJob(job_id=f"job-{i}", model_name="m", values=[1.0]) for i in range(first, first + n)]


async def test_while_busy_a_message_waits_at_most_the_linger_and_goes_out_whole():
    url = BROKERS["redis"]
    purge(url)
    published: list = []
    dispatcher = await busy_dispatcher(url, published)
    try:
        t0 = asyncio.get_running_loop().time()
        dispatcher.submit(jobs(0, 2))  # no company comes: out after the linger, not never
        async with asyncio.timeout(5):
            while not published:
                await asyncio.sleep(0.01)
        assert 0.25 <= published[0][0] - t0 < 1.0
        dispatcher.submit(jobs(2, 10))  # 10 at once, 8 per message: one whole message now ...
        async with asyncio.timeout(5):
            while sum(len(ids) for _, ids in published) < 12:
                await asyncio.sleep(0.01)
        assert [len(ids) for _, ids in published] == [2, 8, 2]  # ... the other 2 after waiting for company
        assert published[2][0] - published[1][0] >= 0.25
        assert message_sizes(url) == [2, 8, 2]
    finally:
        await dispatcher.stop()
        purge(url)


async def test_stopping_publishes_the_batch_in_hand_without_lingering():
    url = BROKERS["redis"]
    purge(url)
    published: list = []
    dispatcher = await busy_dispatcher(url, published, linger_s=30)
    dispatcher.submit(jobs(0, 2))
    await asyncio.sleep(0.05)  # the dispatcher holds them, waiting for company
    assert not published
    t0 = asyncio.get_running_loop().time()
    await dispatcher.stop()
    assert [ids for _, ids in published] == [["job-0", "job-1"]]
    assert published[0][0] - t0 < 2
    assert message_sizes(url) == [2]


async def test_start_jobs_tells_the_dispatcher_its_message_left_the_queue(tmp_path):
    from satlas.internal.v1 import job_control_service_pb2 as jc

    from orchestrator_svc import db, migrate
    from orchestrator_svc.service import Core, JobControl
    from orchestrator_svc.store import JobStore

    class Hub:
        async def publish(self, snapshots):
            pass

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate.upgrade(url)
    store = JobStore(db.make_engine(url))
    (ids,), _, _ = store.create_jobs([jc.Submission(series={"values": [1.0] * 8}, models=["a", "b"])])
    core = Core(store, Hub(), threads=1)
    core.set_dispatcher(Dispatcher(make_celery(BROKERS["redis"], "satlas-test"), 8, None))
    core.dispatcher.backlog.published(ids, 0.0)
    reply = await JobControl(core).StartJobs(jc.StartJobsRequest(job_ids=ids, worker="w"), None)
    assert list(reply.job_ids) == ids and core.dispatcher.backlog.waiting(0.0) == 0
    core.writer.close()
    core.pool.shutdown()


def test_a_redispatched_job_counts_in_its_newest_message_only():
    b = Backlog(stale_s=10)
    b.published(["a", "b"], at=0)
    b.published(["a"], at=1)  # the reconciler sent "a" again
    b.started(["b"])  # the first message was taken
    assert b.waiting(now=2) == 1  # the second still waits
    b.started(["a"])
    assert b.waiting(now=2) == 0


async def test_while_a_message_is_unfinished_the_next_waits_out_the_gap():
    """Pacing: idle workers get a job at once; while a message is unfinished, messages go at most
    one per gap (what arrives meanwhile shares one); a finished message ends the wait."""
    url = BROKERS["redis"]
    purge(url)
    published: list = []

    async def on_published(job_ids, at):
        published.append((asyncio.get_running_loop().time(), job_ids))

    dispatcher = Dispatcher(make_celery(url, "satlas-test"), 8, on_published, ahead=0, linger_s=1.0, gap_s=0.4)
    await dispatcher.start()

    async def out(n: int) -> None:
        async with asyncio.timeout(5):
            while sum(len(ids) for _, ids in published) < n:
                await asyncio.sleep(0.005)

    try:
        t0 = asyncio.get_running_loop().time()
        dispatcher.submit(jobs(0, 2))  # nothing unfinished: at once
        await out(2)
        assert published[0][0] - t0 < 0.2
        for k in range(3):  # while it runs, three series within the gap: one message, after it
            dispatcher.submit(jobs(2 + 2 * k, 2))
            await asyncio.sleep(0.02)
        await out(8)
        assert [len(ids) for _, ids in published] == [2, 6]
        assert published[1][0] - published[0][0] >= 0.39
        t1 = asyncio.get_running_loop().time()
        dispatcher.finished([f"job-{i}" for i in range(8)])  # both reported: idle again
        dispatcher.submit(jobs(8, 2))
        await out(10)
        assert published[2][0] - t1 < 0.2
    finally:
        await dispatcher.stop()
        purge(url)


def test_the_redis_broker_reuses_one_client_per_channel():
    from satkit.redis_transport import Transport

    app = make_celery(BROKERS["redis"], "satlas-test")
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.ping()

"""The orchestrator's group-commit writer on SQLite and PostgreSQL: writes in flight together
share one transaction, every caller still gets its own answer, a faulty write fails alone, and
stopping applies what was queued."""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from orchestrator_svc import db, migrate
from orchestrator_svc.store import JobStore
from orchestrator_svc.writer import Writer


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM inference_results"))
        conn.execute(sa.text("DELETE FROM submissions"))
    yield JobStore(engine, max_attempts=3)
    engine.dispose()


def submission(key: str = "") -> jc.Submission:
    return jc.Submission(series={"values": [float(i) for i in range(16)]}, models=["vae", "transformer"],
                         idempotency_key=key)


class Recorder:
    def __init__(self):
        self.events: list[job_pb2.Job] = []
        self.dispatched: list = []

    async def publish(self, snaps):
        self.events.extend(snaps)

    def dispatch(self, dispatches):
        self.dispatched.extend(dispatches)


async def started_writer(store, rec: Recorder) -> Writer:
    writer = Writer(store, rec.publish, rec.dispatch)
    await writer.start()
    return writer


async def test_concurrent_creates_share_transactions_and_each_gets_its_own_ids(store):
    rec = Recorder()
    writer = await started_writer(store, rec)
    answers = await asyncio.gather(*(writer.create_jobs([submission(), submission()]) for _ in range(20)))
    await writer.stop()
    writer.close()
    ids = [j for per_call in answers for per_sub in per_call for j in per_sub]
    assert all(len(per_call) == 2 and all(len(s) == 2 for s in per_call) for per_call in answers)
    assert len(set(ids)) == 80
    assert writer.ops == 20 and writer.groups <= 3  # the first alone, the rest together
    assert {e.job_id for e in rec.events} == set(ids) and {e.state for e in rec.events} == {js.JOB_STATE_PENDING}
    assert sorted(d.job_id for d in rec.dispatched) == sorted(ids)


async def test_an_idempotency_key_sent_twice_in_one_group_gives_one_set_of_jobs(store):
    rec = Recorder()
    writer = await started_writer(store, rec)
    first, second, third = await asyncio.gather(*(writer.create_jobs([submission(key="k")]) for _ in range(3)))
    await writer.stop()
    assert first == second == third
    assert len(rec.dispatched) == 2


async def test_starts_of_two_workers_in_one_group_each_get_their_own_jobs(store):
    rec = Recorder()
    (a, b), _, _ = store.create_jobs([submission(), submission()])
    writer = await started_writer(store, rec)
    got_a, got_b, again = await asyncio.gather(
        writer.start_jobs(a, "w-a"), writer.start_jobs(b, "w-b"), writer.start_jobs(a + ["no-such-job"], "w-c"))
    await writer.stop()
    assert got_a == a and got_b == b
    assert again == a  # a redelivered message re-claims its active jobs, as StartJobs always did
    assert {store.get(j).worker for j in b} == {"w-b"}
    assert {store.get(j).worker for j in a} == {"w-c"}


async def test_reports_in_one_group_apply_once_per_job(store):
    rec = Recorder()
    (ids,), _, _ = store.create_jobs([submission()])
    store.start_jobs(ids, "w")
    writer = await started_writer(store, rec)
    ok = [jc.JobOutcome(job_id=j, result=job_pb2.JobResult(predictions=[1.0]), inference_seconds=0.01) for j in ids]
    late = [jc.JobOutcome(job_id=ids[0], error="duplicate")]
    applied = await asyncio.gather(writer.report_results(ok), writer.report_results(late))
    await writer.stop()
    assert applied == [2, 0]
    assert {store.get(j).state for j in ids} == {js.JOB_STATE_SUCCEEDED}
    assert [e.state for e in rec.events].count(js.JOB_STATE_SUCCEEDED) == 2


async def test_one_faulty_write_fails_alone(store):
    class Faulty(JobStore):
        def start_jobs_in(self, conn, job_ids, worker):
            if worker == "bad":
                raise RuntimeError("broken worker name")
            return super().start_jobs_in(conn, job_ids, worker)

    faulty = Faulty(store.engine)
    (a, b), _, _ = faulty.create_jobs([submission(), submission()])
    rec = Recorder()
    writer = await started_writer(faulty, rec)
    results = await asyncio.gather(writer.start_jobs(a, "good"), writer.start_jobs(b, "bad"),
                                   writer.cancel(b[0]), return_exceptions=True)
    await writer.stop()
    assert results[0] == a
    assert isinstance(results[1], RuntimeError)
    assert results[2].state == js.JOB_STATE_CANCELLED
    assert {store.get(j).state for j in a} == {js.JOB_STATE_RUNNING}
    assert store.get(b[1]).state == js.JOB_STATE_PENDING  # the faulty start changed nothing


async def test_stop_applies_what_is_queued_and_later_writes_run_alone(store):
    rec = Recorder()
    writer = await started_writer(store, rec)
    pending = [asyncio.ensure_future(writer.create_jobs([submission()])) for _ in range(5)]
    await asyncio.sleep(0)  # queued, not yet applied
    await writer.stop()
    assert all(p.done() for p in pending)
    (ids,) = pending[0].result()
    await writer.mark_queued(ids)  # the dispatcher's last marks, after the writer stopped
    writer.close()
    assert {store.get(j).state for j in ids} == {js.JOB_STATE_QUEUED}


async def test_cancel_of_an_unknown_job_is_none(store):
    writer = await started_writer(store, Recorder())
    assert await writer.cancel("no-such-job") is None
    await writer.stop()


async def test_queued_marks_wait_to_share_a_commit_and_keep_their_broker_time(store):
    rec = Recorder()
    writer = Writer(store, rec.publish, rec.dispatch, queued_wait_s=0.3)
    await writer.start()
    (ids,) = await writer.create_jobs([submission()])
    groups = writer.groups
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=0.05)  # when the message reached the broker
    marking = asyncio.ensure_future(writer.mark_queued(ids, at))
    await asyncio.sleep(0.05)
    assert not marking.done()  # alone, a mark waits for company
    await writer.start_jobs(ids, "w1")  # ... which the jobs' start brings
    await marking
    assert writer.groups == groups + 1  # one transaction for both
    await writer.stop()
    writer.close()
    states = [(j.job_id, j.state) for j in rec.events]
    for job_id in ids:
        assert [s for i, s in states if i == job_id] == [js.JOB_STATE_PENDING, js.JOB_STATE_QUEUED, js.JOB_STATE_RUNNING]
    job = store.get(ids[0])
    assert abs(job.queue_time.ToDatetime(dt.timezone.utc) - at) < dt.timedelta(milliseconds=1)
    assert job.queue_time.ToNanoseconds() < job.start_time.ToNanoseconds()
    lone = asyncio.get_running_loop().time()
    writer = Writer(store, rec.publish, rec.dispatch, queued_wait_s=0.1)
    await writer.start()
    (more,) = await writer.create_jobs([submission()])
    lone = asyncio.get_running_loop().time()
    await writer.mark_queued(more)  # no company comes: it commits after the wait
    assert 0.09 <= asyncio.get_running_loop().time() - lone < 2
    await writer.stop()
    writer.close()


def postgresql_only(store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: no asynchronous commit, and the writer holds no connection of its own")


def spy_on_groups(store, monkeypatch) -> list[tuple[str, int]]:
    """(synchronous_commit, the backend's pid) in each group transaction, as it runs."""
    seen, real = [], store.group_transaction

    @contextmanager
    def spied(durable=True):
        with real(durable) as conn:
            seen.append(tuple(conn.exec_driver_sql("SELECT current_setting('synchronous_commit'), "
                                                   "pg_backend_pid()").one()))
            yield conn

    monkeypatch.setattr(store, "group_transaction", spied)
    return seen


async def test_starts_and_marks_do_not_wait_for_the_disk_but_results_do(store, monkeypatch):
    """PostgreSQL: a group of starts or marks commits without waiting for the WAL flush (a crash
    may lose them; the reconciler runs those jobs again); one with creates, results or a cancel
    waits (a result announced and then lost would be announced twice)."""
    postgresql_only(store)
    seen = spy_on_groups(store, monkeypatch)
    rec = Recorder()
    writer = await started_writer(store, rec)
    (ids,) = await writer.create_jobs([submission()])
    await writer.start_jobs(ids, "w1")
    await writer.mark_queued(ids)
    await writer.report_results([jc.JobOutcome(job_id=ids[1], result=job_pb2.JobResult())])
    await writer.cancel(ids[0])
    assert [on for on, _ in seen] == ["on", "off", "off", "on", "on"]
    # Two connections held from group to group: no pool checkout (and its liveness check) each time.
    assert len({pid for _, pid in seen}) == 2
    await writer.stop()
    writer.close()
    assert store.engine.pool.checkedout() == 0
    # The session that skips the flush was closed, not pooled: every pooled transaction waits for it.
    with store.engine.connect() as a, store.engine.connect() as b:
        assert {c.exec_driver_sql("SHOW synchronous_commit").scalar() for c in (a, b)} == {"on"}
    with store.transaction(durable=False) as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with store.transaction() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


@pytest.mark.parametrize("idle", [False, True])
async def test_a_write_goes_through_when_the_writers_connection_was_killed(store, monkeypatch, idle):
    """The server ends the writer's held connection (a restart, an administrator): the next write
    still commits, on a new connection, and is applied once. Idle: the liveness check after an
    unused moment finds it gone; busy: the group's first statement does, and the group runs again."""
    postgresql_only(store)
    monkeypatch.setattr(store._held, "idle_check_s", 0.05 if idle else 60.0)
    seen = spy_on_groups(store, monkeypatch)
    writer = await started_writer(store, Recorder())
    (ids,) = await writer.create_jobs([submission()])
    with store.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": seen[-1][1]}).scalar()
    await asyncio.sleep(0.2)
    (more,) = await writer.create_jobs([submission()])
    assert seen[-1][1] != seen[0][1]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM inference_results")).scalar() == len(ids) + len(more) == 4
    await writer.stop()
    writer.close()


async def test_a_write_that_comes_while_the_last_group_applies_is_applied_not_left_waiting(store):
    """As at shutdown: the dispatcher publishes what the last group dispatched and marks it QUEUED
    while that group is still being applied."""
    marks = []

    class Marking(Recorder):
        async def publish(self, snaps):
            await super().publish(snaps)
            marks.append(asyncio.ensure_future(writer.mark_queued([s.job_id for s in snaps])))

    writer = await started_writer(store, Marking())
    last = asyncio.ensure_future(writer.create_jobs([submission()]))
    await writer.stop()  # takes the create and the stop in one group
    await last
    await asyncio.wait_for(asyncio.gather(*marks), 10)  # hung forever in the ended loop's queue
    writer.close()
    with store.engine.connect() as conn:
        assert {r.status for r in conn.execute(sa.text("SELECT status FROM inference_results"))} == {db.QUEUED}

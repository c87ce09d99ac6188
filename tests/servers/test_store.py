"""Job state in the database, on SQLite and on the machine's PostgreSQL: idempotency,
conditional transitions (a result or start applied once), poison jobs, re-dispatch,
pagination, and the older system's SQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from orchestrator_svc import db, migrate
from orchestrator_svc.store import JobStore

SEED_SQL = [
    "SELECT job_id, model_name, status, created_at FROM inference_results ORDER BY created_at DESC LIMIT 10;",
    "SELECT model_name, COUNT(*) FROM inference_results WHERE status = 'completed' GROUP BY model_name;",
    "SELECT model_name, COUNT(*) AS total, AVG(CAST(metrics->>'inference_time' AS FLOAT)) AS avg_inference_time "
    "FROM inference_results WHERE status = 'completed' GROUP BY model_name;",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:  # the PostgreSQL database is shared by the session's tests
        conn.execute(sa.text("DELETE FROM inference_results"))
        conn.execute(sa.text("DELETE FROM submissions"))
    yield JobStore(engine, max_attempts=2)
    engine.dispose()


def submission(models=("vae_timeseries", "transformer_timeseries"), key="", n=20) -> jc.Submission:
    s = jc.Submission(models=list(models), idempotency_key=key)
    s.series.values.extend(float(i) for i in range(n))
    return s


def test_migrations_match_the_models(store):
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.Base.metadata) == []


def test_create_returns_one_id_per_model_and_pending_snapshots(store):
    ids, dispatches, snaps = store.create_jobs([submission(), submission(models=["vae_timeseries"])])
    assert [len(i) for i in ids] == [2, 1]
    assert [d.model_name for d in dispatches] == ["vae_timeseries", "transformer_timeseries", "vae_timeseries"]
    assert {s.state for s in snaps} == {js.JOB_STATE_PENDING}
    assert store.get(ids[0][0]).series.values[:3] == [0.0, 1.0, 2.0]


def test_each_new_job_carries_its_own_id_and_model_and_its_submissions_series(store):
    first, second = submission(n=3), submission(models=["vae_timeseries"], n=5)
    first.series.labels["site"] = "north"
    first.horizon, first.traceparent = 4, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ids, dispatches, snaps = store.create_jobs([first, second])
    assert [d.job_id for d in dispatches] == [s.job_id for s in snaps] == [*ids[0], *ids[1]]
    assert [(d.model_name, list(d.values), d.horizon, bool(d.traceparent)) for d in dispatches] == [
        ("vae_timeseries", [0.0, 1.0, 2.0], 4, True), ("transformer_timeseries", [0.0, 1.0, 2.0], 4, True),
        ("vae_timeseries", [0.0, 1.0, 2.0, 3.0, 4.0], 0, False)]
    assert [(s.model_name, s.series_length, dict(s.labels), s.trace_id, s.version) for s in snaps] == [
        ("vae_timeseries", 3, {"site": "north"}, "0af7651916cd43dd8448eb211c80319c", 1),
        ("transformer_timeseries", 3, {"site": "north"}, "0af7651916cd43dd8448eb211c80319c", 1),
        ("vae_timeseries", 5, {}, "", 1)]
    assert len({s.create_time.ToNanoseconds() for s in snaps}) == 1 and snaps[0].create_time.seconds > 0
    assert store.get(ids[0][1], with_series=False) == snaps[1]  # what the row reads back as


def test_same_idempotency_key_returns_the_same_ids_and_creates_nothing(store):
    first, _, _ = store.create_jobs([submission(key="abc")])
    again, dispatches, snaps = store.create_jobs([submission(key="abc"), submission(key="abc")])
    assert again == [first[0], first[0]]
    assert dispatches == [] and snaps == []
    assert sum(sum(c.values()) for c in store.counts().values()) == 2


def test_a_result_is_applied_once(store):
    (ids,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    store.mark_queued(ids)
    started, snaps = store.start_jobs(ids, "w1")
    assert started == ids and snaps[0].state == js.JOB_STATE_RUNNING and snaps[0].attempts == 1
    ok = jc.JobOutcome(job_id=ids[0], result=job_pb2.JobResult(predictions=[1.5]), inference_seconds=0.01)
    applied, snaps = store.report_results([ok])
    assert applied == 1 and snaps[0].state == js.JOB_STATE_SUCCEEDED and snaps[0].version == 4
    applied, snaps = store.report_results([ok, jc.JobOutcome(job_id=ids[0], error="late duplicate")])
    assert applied == 0 and snaps == []
    job = store.get(ids[0])
    assert job.state == js.JOB_STATE_SUCCEEDED and list(job.result.predictions) == [1.5]
    assert store.start_jobs(ids, "w2") == ([], [])  # a redelivered task does not run it again


def test_poison_job_fails_after_max_attempts(store):
    (ids,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    for worker in ("w1", "w2"):
        assert store.start_jobs(ids, worker)[0] == ids
    started, snaps = store.start_jobs(ids, "w3")
    assert started == [] and snaps[0].state == js.JOB_STATE_FAILED and "2 attempts" in snaps[0].error


def test_cancel_wins_over_a_late_result(store):
    (ids,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    job, changed = store.cancel(ids[0])
    assert job.state == js.JOB_STATE_CANCELLED and changed
    assert store.start_jobs(ids, "w1")[0] == []
    assert store.report_results([jc.JobOutcome(job_id=ids[0], result=job_pb2.JobResult())])[0] == 0
    assert store.cancel("no-such-job")[0] is None


def test_stuck_jobs_are_dispatched_again(store):
    (ids,), _, _ = store.create_jobs([submission()])
    store.start_jobs(ids[:1], "w1")  # one RUNNING on a worker that vanished, one still PENDING
    dispatches, snaps = store.redispatch_stuck(older_than_s=-1)
    assert sorted(d.job_id for d in dispatches) == sorted(ids)
    assert {s.state for s in snaps} == {js.JOB_STATE_QUEUED}
    assert store.redispatch_stuck(older_than_s=60) == ([], [])


def test_a_job_finishing_during_redispatch_is_not_sent_or_announced_again(store):
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite's one writer cannot interleave two transactions")
    (ids,), _, _ = store.create_jobs([submission()])
    store.start_jobs(ids, "w1")
    finished = []

    def finish_first(conn, cursor, statement, *_):  # after redispatch's SELECT, before its UPDATE
        if statement.startswith("UPDATE inference_results SET status") and not finished:
            finished.append(None)  # report_results' own UPDATE passes through here too
            finished[0] = store.report_results([jc.JobOutcome(job_id=ids[0], result=job_pb2.JobResult())])

    sa.event.listen(store.engine, "before_cursor_execute", finish_first)
    try:
        dispatches, snaps = store.redispatch_stuck(older_than_s=-1)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", finish_first)
    assert finished[0][0] == 1  # the result landed in between
    assert [d.job_id for d in dispatches] == [s.job_id for s in snaps] == ids[1:]
    assert store.get(ids[0]).state == js.JOB_STATE_SUCCEEDED


@pytest.fixture()
def own_pg_store():
    """A database of its own: the session's shared one has a live stack's reconciler on it."""
    from support import POSTGRES_ADMIN_URL

    from tools.bench.database import fresh_database

    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_race") as url:
        migrate.upgrade(url)
        engine = db.make_engine(url)
        yield JobStore(engine, max_attempts=2)
        engine.dispose()


def test_two_reconcilers_racing_send_a_stuck_job_once(own_pg_store):
    """Two replicas' reconcilers pick the same stuck job: the second, whose UPDATE comes after the
    first committed, must not send it again."""
    store = own_pg_store
    (ids,), _, _ = store.create_jobs([submission()])
    with store.engine.begin() as conn:  # stuck for a minute
        conn.execute(sa.text("UPDATE inference_results SET updated_at = updated_at - interval '60 seconds' "
                             "WHERE job_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
    other = []

    def other_replica_first(conn, cursor, statement, *_):  # after this one's SELECT, before its UPDATE
        if statement.startswith("UPDATE inference_results SET status") and not other:
            other.append(None)
            other[0] = store.redispatch_stuck(older_than_s=30)

    sa.event.listen(store.engine, "before_cursor_execute", other_replica_first)
    try:
        dispatches, snaps = store.redispatch_stuck(older_than_s=30)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", other_replica_first)
    assert sorted(d.job_id for d in other[0][0]) == sorted(ids)  # the other replica sent both
    assert (dispatches, snaps) == ([], [])  # and this one neither
    with store.engine.connect() as conn:
        sent = conn.execute(sa.text("SELECT dispatches FROM inference_results WHERE job_id IN :ids")
                            .bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).scalars().all()
    assert sent == [2, 2]  # created, then sent again once


def test_list_pages_newest_first_with_filters(store):
    for _ in range(5):
        store.create_jobs([submission()])
    page, token = store.list("", [], 4, "")
    seen = [j.job_id for j in page]
    while token:
        page, token = store.list("", [], 4, token)
        seen += [j.job_id for j in page]
    assert len(seen) == len(set(seen)) == 10
    vae, _ = store.list("vae_timeseries", [db.PENDING], 50, "")
    assert len(vae) == 5 and {j.model_name for j in vae} == {"vae_timeseries"}
    with pytest.raises(ValueError):
        store.list("", [], 4, "not-a-token")


def test_seed_sql_runs_unchanged(store):
    (ids,), _, _ = store.create_jobs([submission()])
    store.start_jobs(ids, "w1")
    store.report_results([jc.JobOutcome(job_id=i, result=job_pb2.JobResult(), inference_seconds=0.1) for i in ids])
    with store.engine.connect() as conn:
        latest, completed, averages = (conn.execute(sa.text(q)).all() for q in SEED_SQL)
    assert {r.status for r in latest} == {"completed"}
    assert sorted(completed) == [("transformer_timeseries", 1), ("vae_timeseries", 1)]
    assert [round(r.avg_inference_time, 3) for r in averages] == [0.1, 0.1]


def test_redispatch_can_leave_queued_jobs_alone(store):
    (ids,), _, _ = store.create_jobs([submission()])
    store.mark_queued(ids[:1])  # one QUEUED (waiting behind a backlog, say), one PENDING
    dispatches, _ = store.redispatch_stuck(older_than_s=-1, statuses=("pending", "running"))
    assert [d.job_id for d in dispatches] == ids[1:]


def test_replicas_starting_together_migrate_one_after_the_other():
    """Two orchestrators on a fresh PostgreSQL database both run the migrations at start-up."""
    import threading

    from support import POSTGRES_ADMIN_URL

    from tools.bench.database import fresh_database

    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_migrate") as url:
        errors = []

        def start():
            try:
                migrate.upgrade(url)
            except Exception as exc:  # a CREATE TABLE racing another's
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        engine = sa.create_engine(db.sqlalchemy_url(url))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM inference_results")).scalar() == 0
        engine.dispose()


def test_a_job_sent_again_keeps_its_horizon_and_trace_context(store):
    s = submission(models=["transformer_timeseries"])
    s.horizon, s.traceparent = 5, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    (ids,), (first,), (snap,) = store.create_jobs([s])
    assert (first.horizon, first.traceparent) == (5, s.traceparent)
    assert snap.trace_id == "0af7651916cd43dd8448eb211c80319c" == store.get(ids[0]).trace_id
    (again,), _ = store.redispatch_stuck(older_than_s=-1)
    assert (again.job_id, again.horizon, again.traceparent) == (ids[0], 5, s.traceparent)


def test_changed_between_gives_each_job_changed_in_the_window_as_it_is_now(store):
    import datetime as dt

    from orchestrator_svc.store import now

    (old,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    since = now()
    (ids,), _, _ = store.create_jobs([submission()])
    store.mark_queued(ids)
    store.start_jobs(ids[:1], "w1")
    store.report_results([jc.JobOutcome(job_id=ids[0], result=job_pb2.JobResult(predictions=[1.0]))])
    until = now()
    (later,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    snaps = store.changed_between(since, until, 100)
    assert sorted(s.job_id for s in snaps) == sorted(ids)  # not the one before, not the one after
    by_id = {s.job_id: s for s in snaps}
    assert by_id[ids[0]].state == js.JOB_STATE_SUCCEEDED and by_id[ids[0]].version == 4
    assert by_id[ids[1]].state == js.JOB_STATE_QUEUED and not by_id[ids[1]].HasField("series")
    assert len(store.changed_between(since, until + dt.timedelta(seconds=5), 1)) == 1


def test_a_change_rolled_back_is_never_built_on(store, monkeypatch):
    # This replica derives a change in a transaction that then fails (here: reading back a job it does
    # not hold); another replica (a second store on the same database) makes the change; this one's
    # next event must carry what is stored, not what it derived and rolled back.
    other = JobStore(store.engine, max_attempts=2)
    (ids,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    (theirs_only,), _, _ = other.create_jobs([submission(models=["vae_timeseries"])])
    mine, theirs = (dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc) for y in (2030, 2031))

    def lost(*_):
        raise RuntimeError("the connection went away")

    with monkeypatch.context() as m:
        m.setattr(store, "_read_back", lost)
        with pytest.raises(RuntimeError):
            store.mark_queued([*ids, *theirs_only], mine)
    other.mark_queued(ids, theirs)
    _, (started,) = store.start_jobs(ids, "w")
    assert started.queue_time.ToDatetime(dt.timezone.utc) == theirs
    assert started == store.get(ids[0], with_series=False)


def test_a_failed_group_is_never_built_on(store, monkeypatch):
    from orchestrator_svc.writer import QUEUED, START, Op, apply_group

    other = JobStore(store.engine, max_attempts=2)
    (ids,), _, _ = store.create_jobs([submission(models=["vae_timeseries"])])
    mine, theirs = (dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc) for y in (2030, 2031))
    with monkeypatch.context() as m:  # the group's queued mark derives, then its start fails
        m.setattr(store.hot, "start", lambda *_: (_ for _ in ()).throw(RuntimeError("no")))
        with pytest.raises(RuntimeError):
            apply_group(store, [Op(QUEUED, (ids, mine), None), Op(START, (["x"], "w"), None)])
    other.mark_queued(ids, theirs)
    _, (started,) = store.start_jobs(ids, "w")
    assert started.queue_time.ToDatetime(dt.timezone.utc) == theirs

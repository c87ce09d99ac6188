"""Job state in the database. Every method is one transaction and returns the snapshots
of the jobs it changed, which the service publishes as events after the commit.

Methods are synchronous (SQLAlchemy); the service runs them in a thread pool. State
changes are conditional UPDATEs (``WHERE status IN (...)``), so two writers racing on one
job (a redelivered task, a reconciler) cannot both apply: the second matches no row.

The hot writes are Core statements built once with bound parameters and return their
snapshots with RETURNING: building SQLAlchemy expressions per call cost more CPU than the
database did, and a second SELECT per transaction a round trip.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid
from collections.abc import Sequence
from contextlib import contextmanager

from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2, timeseries_pb2
from sqlalchemy import DateTime, String, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from orchestrator_svc import db
from orchestrator_svc.convert import job_to_proto, result_to_json, utc
from satkit.queue import TaskJob  # what a worker needs to run one job; a message carries several

R = db.InferenceResult
T = R.__table__
SNAPSHOT = [c for c in T.c if c.name != "series"]  # what an event carries


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Statements:
    """The write statements, built once for a dialect. Bound parameters: ``ids`` (a list),
    ``t`` (now) and ``t_text`` (now as SQLite stores it), plus each statement's own."""

    def __init__(self, dialect: str, max_attempts: int):
        ids = T.c.job_id.in_(bindparam("ids", expanding=True))
        active = T.c.status.in_(db.ACTIVE)
        t = bindparam("t", type_=DateTime(timezone=True))
        if dialect == "sqlite":  # julianday() reads the ISO strings SQLite stores
            age = (func.julianday(bindparam("t_text", type_=String)) - func.julianday(T.c.created_at)) * 86400.0
        else:
            age = func.extract("epoch", t - T.c.created_at)
        bump = dict(updated_at=t, version=T.c.version + 1)
        self.insert = insert(T).returning(*SNAPSHOT, sort_by_parameter_order=True)
        self.mark_queued = (
            update(T).where(ids, T.c.status == db.PENDING)
            .values(status=db.QUEUED, queued_at=t, **bump).returning(*SNAPSHOT)
        )
        self.poison = (
            update(T).where(ids, active, T.c.attempts >= max_attempts)
            .values(status=db.FAILED, finished_at=t, total_seconds=age, **bump,
                    error=f"gave up after {max_attempts} attempts: the job never finished on a worker")
            .returning(*SNAPSHOT)
        )
        self.start = (
            update(T).where(ids, active, T.c.attempts < max_attempts)
            .values(status=db.RUNNING, started_at=t, worker=bindparam("worker"), attempts=T.c.attempts + 1,
                    queue_seconds=age, **bump)
            .returning(*SNAPSHOT)
        )
        active_rows = select(T.c.job_id, T.c.created_at, T.c.queue_seconds).where(ids, active)
        # Locked on PostgreSQL: between this read and the UPDATE no other writer finishes them.
        self.active_for_report = active_rows if dialect == "sqlite" else active_rows.with_for_update()
        # executemany (one row of parameters per outcome) takes no expanding IN: spelled out.
        still_active = or_(*(T.c.status == status for status in db.ACTIVE))
        self.report = (
            update(T).where(T.c.job_id == bindparam("b_job_id"), still_active)
            .values(status=bindparam("b_status"), finished_at=t, updated_at=t, version=T.c.version + 1,
                    inference_seconds=bindparam("b_inference"), total_seconds=bindparam("b_total"),
                    error=bindparam("b_error"), result=bindparam("b_result"), metrics=bindparam("b_metrics"))
        )
        self.cancel = (
            update(T).where(ids, active)
            .values(status=db.CANCELLED, finished_at=t, total_seconds=age, error="cancelled by request", **bump)
            .returning(*SNAPSHOT)
        )
        self.snapshots = select(*SNAPSHOT).where(ids)


class JobStore:
    def __init__(self, engine, *, max_attempts: int = 3):
        self.engine = engine
        self.max_attempts = max_attempts
        self.sql = Statements(engine.dialect.name, max_attempts)
        # SQLite has one writer; taking turns here avoids "database is locked" on upgrade.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def transaction(self):
        """One write transaction (SQLite: one writer at a time)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with self._write_lock, self.engine.begin() as conn:
                yield conn

    @staticmethod
    def _times() -> dict:
        t = now()
        return {"t": t, "t_text": t.strftime("%Y-%m-%d %H:%M:%S.%f")}

    # --- writes: each public method is one transaction; the ``*_in`` forms run inside one
    # the caller holds, so that a group of writes can share a commit (orchestrator_svc.writer).

    def create_jobs(
        self, submissions: Sequence[jc.Submission]
    ) -> tuple[list[list[str]], list[TaskJob], list[job_pb2.Job]]:
        """Store the jobs of many submissions. Returns job ids per submission, what to dispatch
        and the new jobs' snapshots. A known idempotency key returns its first job ids."""
        for attempt in range(3):
            try:
                with self.transaction() as conn:
                    return self.create_jobs_in(conn, submissions)
            except IntegrityError:  # another replica stored the same key first: read it back
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def create_jobs_in(self, conn, submissions: Sequence[jc.Submission]):
        t = now()
        keys = {s.idempotency_key for s in submissions if s.idempotency_key}
        known: dict[str, list[str]] = {}
        if keys:
            for key, job_ids in conn.execute(select(db.Submission.idempotency_key, db.Submission.job_ids)
                                             .where(db.Submission.idempotency_key.in_(keys))):
                known[key] = list(job_ids)
        ids_per_submission, rows, dispatches, new_keys = [], [], [], []
        for s in submissions:
            key = s.idempotency_key
            if key and key in known:
                ids_per_submission.append(known[key])
                continue
            series = s.series.SerializeToString()
            values = s.series.values
            ids = []
            for model in s.models:
                job_id = str(uuid.uuid4())
                ids.append(job_id)
                rows.append(
                    dict(
                        job_id=job_id, model_name=model, status=db.PENDING, created_at=t, updated_at=t,
                        metrics={}, series_id=s.series.series_id or None, series_length=len(values),
                        labels=dict(s.series.labels), series=series, attempts=0, dispatches=1, version=1,
                        idempotency_key=key or None,
                    )
                )
                dispatches.append(TaskJob(job_id=job_id, model_name=model, values=values))
            if key:
                known[key] = ids
                new_keys.append(dict(idempotency_key=key, job_ids=ids, created_at=t))
            ids_per_submission.append(ids)
        snapshots = [job_to_proto(r) for r in conn.execute(self.sql.insert, rows)] if rows else []
        if new_keys:
            conn.execute(insert(db.Submission), new_keys)
        return ids_per_submission, dispatches, snapshots

    def mark_queued(self, job_ids: Sequence[str]) -> list[job_pb2.Job]:
        """PENDING -> QUEUED once the dispatch is on the broker. Jobs already further along are
        left alone (a fast worker may have started them)."""
        with self.transaction() as conn:
            return self.mark_queued_in(conn, job_ids)

    def mark_queued_in(self, conn, job_ids: Sequence[str]) -> list[job_pb2.Job]:
        return [job_to_proto(r) for r in conn.execute(self.sql.mark_queued, {"ids": list(job_ids), **self._times()})]

    def start_jobs(self, job_ids: Sequence[str], worker: str) -> tuple[list[str], list[job_pb2.Job]]:
        """Mark jobs RUNNING for ``worker``; returns the ids to run and the snapshots. A job
        started ``max_attempts`` times already fails here (it keeps killing or failing workers)."""
        with self.transaction() as conn:
            return self.start_jobs_in(conn, job_ids, worker)

    def start_jobs_in(self, conn, job_ids: Sequence[str], worker: str) -> tuple[list[str], list[job_pb2.Job]]:
        params = {"ids": list(job_ids), "worker": worker, **self._times()}
        started = [job_to_proto(r) for r in conn.execute(self.sql.start, params)]
        if len(started) == len(set(job_ids)):  # the usual case: no second statement
            return [j.job_id for j in started], started
        rest = list(set(job_ids) - {j.job_id for j in started})  # finished, unknown, or poison
        poison = [job_to_proto(r) for r in conn.execute(self.sql.poison, {**params, "ids": rest})]
        return [j.job_id for j in started], [*started, *poison]

    def report_results(self, outcomes: Sequence[jc.JobOutcome]) -> tuple[int, list[job_pb2.Job]]:
        """Apply outcomes; one that finds its job already terminal changes nothing."""
        with self.transaction() as conn:
            snaps = self.report_results_in(conn, outcomes)
        return len(snaps), snaps

    def report_results_in(self, conn, outcomes: Sequence[jc.JobOutcome]) -> list[job_pb2.Job]:
        """The snapshots of the jobs the outcomes finished (one per job)."""
        times = self._times()
        t = times["t"]
        rows = {r.job_id: r for r in conn.execute(self.sql.active_for_report, {"ids": [o.job_id for o in outcomes]})}
        params = []
        for o in outcomes:
            row = rows.pop(o.job_id, None)  # pop: a job reported twice in one batch applies once
            if row is None:
                continue
            total = (t - utc(row.created_at)).total_seconds()
            params.append(dict(
                b_job_id=o.job_id, b_status=db.FAILED if o.error else db.COMPLETED,
                b_inference=o.inference_seconds, b_total=total, b_error=o.error[:4000] or None,
                b_result=None if o.error else result_to_json(o.result),
                b_metrics={"inference_time": o.inference_seconds, "queue_time": row.queue_seconds,
                           "total_time": total},
                **times,
            ))
        if not params:
            return []
        conn.execute(self.sql.report, params)
        return [job_to_proto(r) for r in conn.execute(self.sql.snapshots, {"ids": [p["b_job_id"] for p in params]})]

    def cancel(self, job_id: str) -> tuple[job_pb2.Job | None, list[job_pb2.Job]]:
        """(the job now, or None if unknown; the changes to publish)."""
        with self.transaction() as conn:
            return self.cancel_in(conn, job_id)

    def cancel_in(self, conn, job_id: str) -> tuple[job_pb2.Job | None, list[job_pb2.Job]]:
        changed = [job_to_proto(r) for r in conn.execute(self.sql.cancel, {"ids": [job_id], **self._times()})]
        if changed:
            return changed[0], changed
        current = [job_to_proto(r) for r in conn.execute(self.sql.snapshots, {"ids": [job_id]})]
        return (current[0] if current else None), []

    def redispatch_stuck(self, older_than_s: float, limit: int = 500, statuses: Sequence[str] = db.ACTIVE
                         ) -> tuple[list[TaskJob], list[job_pb2.Job]]:
        """Jobs in ``statuses`` with no progress for ``older_than_s``: PENDING (dispatch never
        published), QUEUED (message lost with the broker) or RUNNING (worker gone). They are queued
        again; results are applied once by job id, so a duplicate run changes nothing."""
        t = now()
        cutoff = t - dt.timedelta(seconds=older_than_s)
        with self.transaction() as conn:
            rows = conn.execute(
                select(T.c.job_id, T.c.model_name, T.c.series)
                .where(T.c.status.in_(list(statuses)), T.c.updated_at < cutoff)
                .order_by(T.c.updated_at)
                .limit(limit)
            ).all()
            if not rows:
                return [], []
            # A job may finish between the SELECT and this UPDATE: only the rows it changed go
            # out again, or that job's terminal state would be published a second time.
            snaps = [job_to_proto(r) for r in conn.execute(
                update(T)
                .where(T.c.job_id.in_([r.job_id for r in rows]), T.c.status.in_(db.ACTIVE))
                .values(status=db.QUEUED, queued_at=t, updated_at=t, dispatches=T.c.dispatches + 1,
                        version=T.c.version + 1)
                .returning(*SNAPSHOT)
            )]
            changed = {j.job_id for j in snaps}
            dispatches = [
                TaskJob(job_id=r.job_id, model_name=r.model_name, values=timeseries_pb2.TimeSeries.FromString(r.series).values)
                for r in rows if r.job_id in changed
            ]
            return dispatches, snaps

    # --- reads --------------------------------------------------------------------------

    def get(self, job_id: str, with_series: bool = True) -> job_pb2.Job | None:
        query = select(R).where(R.job_id == job_id)
        if not with_series:
            query = query.options(defer(R.series))
        with Session(self.engine) as session:
            row = session.scalars(query).first()
            return job_to_proto(row, with_series=with_series) if row else None

    def list(
        self, model_name: str, statuses: Sequence[str], page_size: int, page_token: str
    ) -> tuple[list[job_pb2.Job], str]:
        query = select(R).options(defer(R.series)).order_by(R.created_at.desc(), R.job_id.desc())
        if model_name:
            query = query.where(R.model_name == model_name)
        if statuses:
            query = query.where(R.status.in_(list(statuses)))
        if page_token:
            created, job_id = decode_page_token(page_token)
            query = query.where(or_(R.created_at < created, and_(R.created_at == created, R.job_id < job_id)))
        with Session(self.engine) as session:
            rows = session.scalars(query.limit(page_size + 1)).all()
        token = encode_page_token(rows[page_size - 1]) if len(rows) > page_size else ""
        return [job_to_proto(r) for r in rows[:page_size]], token

    def counts(self) -> dict[str, dict[str, int]]:
        """{model: {status: count}} over every stored job."""
        with Session(self.engine) as session:
            out: dict[str, dict[str, int]] = {}
            for model, status, n in session.execute(
                select(R.model_name, R.status, func.count()).group_by(R.model_name, R.status)
            ):
                out.setdefault(model, {})[status] = n
            return out

    def finished_since(self, since: dt.datetime) -> list[tuple[str, str, float | None, float | None]]:
        """(model, status, total_seconds, inference_seconds) of jobs finished since ``since``."""
        with Session(self.engine) as session:
            return [
                tuple(r)
                for r in session.execute(
                    select(R.model_name, R.status, R.total_seconds, R.inference_seconds).where(R.finished_at >= since)
                )
            ]

    def active_workers(self, since: dt.datetime) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count(func.distinct(R.worker))).where(R.started_at >= since)) or 0


def encode_page_token(row) -> str:
    raw = f"{utc(row.created_at).isoformat()}|{row.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(token: str) -> tuple[dt.datetime, str]:
    """Raises ValueError on a token this service did not make."""
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return dt.datetime.fromisoformat(created), job_id
    except Exception as exc:
        raise ValueError("page_token is not one this service returned") from exc

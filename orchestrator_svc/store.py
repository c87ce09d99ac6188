"""Job state in the database. Every method is one transaction and returns the snapshots
of the jobs it changed, which the service publishes as events after the commit.

Methods are synchronous (SQLAlchemy); the service runs them in a thread pool. State
changes are conditional UPDATEs (``WHERE status IN (...)``), so two writers racing on one
job (a redelivered task, a reconciler) cannot both apply: the second matches no row.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from satlas.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2, timeseries_pb2
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from orchestrator_svc import db
from orchestrator_svc.convert import job_to_proto, result_to_json, utc

R = db.InferenceResult


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Dispatch:
    """What a worker needs to run one job (the Celery message carries a list of these)."""

    job_id: str
    model_name: str
    values: list[float]

    def as_message(self) -> dict:
        return {"job_id": self.job_id, "model": self.model_name, "values": self.values}


class JobStore:
    def __init__(self, engine, *, max_attempts: int = 3):
        self.engine = engine
        self.max_attempts = max_attempts
        # SQLite has one writer; taking turns here avoids "database is locked" on upgrade.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def _write(self):
        if self._write_lock is None:
            with Session(self.engine) as session, session.begin():
                yield session
        else:
            with self._write_lock, Session(self.engine) as session, session.begin():
                yield session

    def _snapshots(self, session: Session, job_ids: Iterable[str]) -> list[job_pb2.Job]:
        ids = list(job_ids)
        if not ids:
            return []
        rows = session.scalars(select(R).options(defer(R.series)).where(R.job_id.in_(ids))).all()
        return [job_to_proto(r) for r in rows]

    # --- writes -------------------------------------------------------------------------

    def create_jobs(
        self, submissions: Sequence[jc.Submission]
    ) -> tuple[list[list[str]], list[Dispatch], list[job_pb2.Job]]:
        """Store the jobs of many submissions. Returns job ids per submission, what to dispatch
        and the new jobs' snapshots. A known idempotency key returns its first job ids."""
        for attempt in range(3):
            try:
                return self._create_jobs(submissions)
            except IntegrityError:  # another replica stored the same key first: read it back
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _create_jobs(self, submissions):
        t = now()
        keys = {s.idempotency_key for s in submissions if s.idempotency_key}
        with self._write() as session:
            known: dict[str, list[str]] = {}
            if keys:
                for sub in session.scalars(select(db.Submission).where(db.Submission.idempotency_key.in_(keys))):
                    known[sub.idempotency_key] = list(sub.job_ids)
            ids_per_submission, rows, dispatches, new_keys = [], [], [], []
            for s in submissions:
                key = s.idempotency_key
                if key and key in known:
                    ids_per_submission.append(known[key])
                    continue
                series = s.series.SerializeToString()
                values = list(s.series.values)
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
                    dispatches.append(Dispatch(job_id, model, values))
                if key:
                    known[key] = ids
                    new_keys.append(dict(idempotency_key=key, job_ids=ids, created_at=t))
                ids_per_submission.append(ids)
            if rows:
                session.execute(insert(R), rows)
            if new_keys:
                session.execute(insert(db.Submission), new_keys)
            snapshots = self._snapshots(session, (r["job_id"] for r in rows))
        return ids_per_submission, dispatches, snapshots

    def mark_queued(self, job_ids: Sequence[str]) -> list[job_pb2.Job]:
        """PENDING -> QUEUED once the dispatch is on the broker. Jobs already further along are
        left alone (a fast worker may have started them)."""
        t = now()
        with self._write() as session:
            changed = session.scalars(
                update(R)
                .where(R.job_id.in_(list(job_ids)), R.status == db.PENDING)
                .values(status=db.QUEUED, queued_at=t, updated_at=t, version=R.version + 1)
                .returning(R.job_id)
            ).all()
            return self._snapshots(session, changed)

    def start_jobs(self, job_ids: Sequence[str], worker: str) -> tuple[list[str], list[job_pb2.Job]]:
        """Mark jobs RUNNING for ``worker``; returns the ids to run and the snapshots. A job
        started ``max_attempts`` times already fails here (it keeps killing or failing workers)."""
        t = now()
        ids = list(job_ids)
        with self._write() as session:
            poison = session.scalars(
                update(R)
                .where(R.job_id.in_(ids), R.status.in_(db.ACTIVE), R.attempts >= self.max_attempts)
                .values(
                    status=db.FAILED, finished_at=t, updated_at=t, version=R.version + 1,
                    error=f"gave up after {self.max_attempts} attempts: the job never finished on a worker",
                    total_seconds=_seconds_since(R.created_at, t, session),
                )
                .returning(R.job_id)
            ).all()
            started = session.scalars(
                update(R)
                .where(R.job_id.in_(ids), R.status.in_(db.ACTIVE))
                .values(
                    status=db.RUNNING, started_at=t, updated_at=t, worker=worker,
                    attempts=R.attempts + 1, version=R.version + 1,
                    queue_seconds=_seconds_since(R.created_at, t, session),
                )
                .returning(R.job_id)
            ).all()
            return started, self._snapshots(session, [*poison, *started])

    def report_results(self, outcomes: Sequence[jc.JobOutcome]) -> tuple[int, list[job_pb2.Job]]:
        """Apply outcomes; one that finds its job already terminal changes nothing."""
        t = now()
        with self._write() as session:
            # One read for the timings of the whole batch, then one conditional UPDATE per job.
            rows = {r.job_id: r for r in session.execute(
                select(R.job_id, R.created_at, R.queue_seconds)
                .where(R.job_id.in_([o.job_id for o in outcomes]), R.status.in_(db.ACTIVE))
            )}
            applied = []
            for o in outcomes:
                row = rows.get(o.job_id)
                if row is None:
                    continue
                total = (t - utc(row.created_at)).total_seconds()
                values = dict(
                    status=db.FAILED if o.error else db.COMPLETED, finished_at=t, updated_at=t,
                    version=R.version + 1, inference_seconds=o.inference_seconds, total_seconds=total,
                    error=o.error[:4000] or None, result=None if o.error else result_to_json(o.result),
                    metrics={"inference_time": o.inference_seconds, "queue_time": row.queue_seconds,
                             "total_time": total},
                )
                changed = session.execute(
                    update(R).where(R.job_id == o.job_id, R.status.in_(db.ACTIVE)).values(**values)
                ).rowcount
                if changed:
                    applied.append(o.job_id)
            return len(applied), self._snapshots(session, applied)

    def cancel(self, job_id: str) -> tuple[job_pb2.Job | None, list[job_pb2.Job]]:
        t = now()
        with self._write() as session:
            changed = session.scalars(
                update(R)
                .where(R.job_id == job_id, R.status.in_(db.ACTIVE))
                .values(
                    status=db.CANCELLED, finished_at=t, updated_at=t, version=R.version + 1,
                    error="cancelled by request", total_seconds=_seconds_since(R.created_at, t, session),
                )
                .returning(R.job_id)
            ).all()
            snaps = self._snapshots(session, [job_id])
            return (snaps[0] if snaps else None), (snaps if changed else [])

    def redispatch_stuck(self, older_than_s: float, limit: int = 500) -> tuple[list[Dispatch], list[job_pb2.Job]]:
        """Jobs with no progress for ``older_than_s``: PENDING (dispatch never published),
        QUEUED (message lost with the broker) or RUNNING (worker gone). They are queued again;
        results are applied once by job id, so a duplicate run changes nothing."""
        t = now()
        cutoff = t - dt.timedelta(seconds=older_than_s)
        with self._write() as session:
            rows = session.execute(
                select(R.job_id, R.model_name, R.series, R.status)
                .where(R.status.in_(db.ACTIVE), R.updated_at < cutoff)
                .order_by(R.updated_at)
                .limit(limit)
            ).all()
            if not rows:
                return [], []
            # A job may finish between the SELECT and this UPDATE: only the rows it changed go
            # out again, or that job's terminal state would be published a second time.
            changed = set(session.scalars(
                update(R)
                .where(R.job_id.in_([r.job_id for r in rows]), R.status.in_(db.ACTIVE))
                .values(status=db.QUEUED, queued_at=t, updated_at=t, dispatches=R.dispatches + 1, version=R.version + 1)
                .returning(R.job_id)
            ).all())
            dispatches = [
                Dispatch(r.job_id, r.model_name, list(timeseries_pb2.TimeSeries.FromString(r.series).values))
                for r in rows if r.job_id in changed
            ]
            return dispatches, self._snapshots(session, [d.job_id for d in dispatches])

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


def _seconds_since(column, t: dt.datetime, session: Session):
    """SQL for (t - column) in seconds, for the dialect in use."""
    if session.bind.dialect.name == "sqlite":
        # julianday() works on the ISO strings SQLite stores.
        return (func.julianday(t.strftime("%Y-%m-%d %H:%M:%S.%f")) - func.julianday(column)) * 86400.0
    return func.extract("epoch", t - column)


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

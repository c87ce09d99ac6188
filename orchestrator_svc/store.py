"""Job state in the database. Every public write is one transaction and returns the snapshots
of the jobs it changed, which the service publishes as events after the commit; the ``*_in`` forms
run inside a transaction the caller holds, so that a group of writes shares one commit
(orchestrator_svc.writer).

Methods are synchronous; the service runs them off the event loop. State changes are conditional
UPDATEs (``WHERE status IN (...)``), so two writers racing on one job (a redelivered task, a
reconciler, another replica) cannot both apply: the second matches no row. The writes every job
goes through are driver SQL (orchestrator_svc.statements); their events are built from the
snapshots this replica holds (orchestrator_svc.snapshots) rather than from rows read back.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Sequence
from contextlib import contextmanager

from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2, job_state_pb2, timeseries_pb2
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from orchestrator_svc import db
from orchestrator_svc.convert import job_to_proto, utc
from orchestrator_svc.held import HeldConnections
from orchestrator_svc.ids import new_ids
from orchestrator_svc.snapshots import Snapshots
from orchestrator_svc.statements import SNAPSHOT, Hot, Now, Rare, metrics_json
from satkit.queue import TaskJob  # what a worker needs to run one job; a message carries several
from satkit.tracing import trace_id

R = db.InferenceResult
T = R.__table__
js = job_state_pb2


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobStore:
    def __init__(self, engine, *, max_attempts: int = 3):
        self.engine = engine
        self.max_attempts = max_attempts
        self.hot = Hot(engine.dialect.name, max_attempts)
        self.sql = Rare(engine.dialect.name, max_attempts)
        self.snapshots = Snapshots()
        # SQLite has one writer; taking turns here avoids "database is locked" on upgrade.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._held = HeldConnections(engine) if engine.dialect.name == "postgresql" else None

    @contextmanager
    def transaction(self, durable: bool = True):
        """One write transaction (SQLite: one writer at a time). ``durable=False`` (PostgreSQL):
        the commit does not wait for the WAL to reach the disk; for changes a crash may lose
        because they are made again (queued marks, starts: the reconciler runs such jobs again),
        never for what a caller or a watcher was told is stored (new jobs, cancels, results). The
        snapshots a failed one noted are dropped again (Snapshots.undone_on_failure)."""
        if self._write_lock is None:
            with self.snapshots.undone_on_failure(), self.engine.begin() as conn:
                if not durable:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
        else:
            with self.snapshots.undone_on_failure(), self._write_lock, self.engine.begin() as conn:
                yield conn

    def group_transaction(self, durable: bool = True):
        """``transaction`` for the group writer's thread only: on PostgreSQL on connections it holds
        (orchestrator_svc.held), which spares every group the pool's round trips."""
        return self.transaction(durable) if self._held is None else self._held_transaction(durable)

    @contextmanager
    def _held_transaction(self, durable: bool):
        with self.snapshots.undone_on_failure(), self._held.transaction(durable) as conn:
            yield conn

    def release(self) -> None:
        """Closes what ``group_transaction`` holds (from the writer's thread)."""
        if self._held is not None:
            self._held.close()

    @staticmethod
    def _cursor(conn):
        return conn.connection.dbapi_connection.cursor()

    def _read_back(self, conn, job_ids: list[str]) -> list[job_pb2.Job]:
        """Snapshots from the rows, for changes this replica cannot derive (rare)."""
        if not job_ids:
            return []
        return [job_to_proto(r) for r in conn.execute(self.sql.snapshots, {"ids": job_ids})]

    def _derived(self, conn, changed: list[tuple], change) -> list[job_pb2.Job]:
        """Snapshots of the (job_id, version, ...) rows a write changed, in that order."""
        snaps: list[job_pb2.Job | None] = []
        missing = []
        for row in changed:
            job = self.snapshots.derive(row[0], row[1], lambda j, row=row: change(j, row))
            if job is None:
                missing.append(row[0])
            snaps.append(job)
        if missing:  # derive holds what it made; what was read back is held here
            read = {j.job_id: j for j in self._read_back(conn, missing)}
            self.snapshots.note(read.values())
            snaps = [s if s is not None else read[row[0]] for s, row in zip(snaps, changed)]
        return snaps

    # --- writes ------------------------------------------------------------------------------

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
        t = Now.take()
        keys = {s.idempotency_key for s in submissions if s.idempotency_key}
        known: dict[str, list[str]] = {}
        if keys:
            for key, job_ids in conn.execute(select(db.Submission.idempotency_key, db.Submission.job_ids)
                                             .where(db.Submission.idempotency_key.in_(keys))):
                known[key] = list(job_ids)
        ids_per_submission, rows, dispatches, snaps, new_keys = [], [], [], [], []
        fresh = iter(new_ids(sum(len(s.models) for s in submissions)))
        for s in submissions:
            key = s.idempotency_key
            if key and key in known:
                ids_per_submission.append(known[key])
                continue
            series, values, labels = s.series.SerializeToString(), s.series.values, s.series.labels
            labels_json = json.dumps(dict(labels)) if labels else "{}"
            # What the submission's jobs share, built once and copied into each (a message copy is
            # a few times cheaper than setting its fields, the values above all, one by one).
            task = TaskJob(values=values, traceparent=s.traceparent, horizon=s.horizon)
            pending = job_pb2.Job(state=js.JOB_STATE_PENDING, series_id=s.series.series_id, series_length=len(values),
                                  version=1, timings=job_pb2.JobTimings(), trace_id=trace_id(s.traceparent),
                                  labels=labels, create_time=t.stamp)
            ids = []
            for model in s.models:
                job_id = next(fresh)
                ids.append(job_id)
                rows.append((job_id, model, s.series.series_id or None, len(values), labels_json, series, key or None,
                             s.traceparent or None, s.horizon or None))
                dispatch = TaskJob(job_id=job_id, model_name=model)
                dispatch.MergeFrom(task)
                dispatches.append(dispatch)
                job = job_pb2.Job(job_id=job_id, model_name=model)
                job.MergeFrom(pending)
                snaps.append(job)
            if key:
                known[key] = ids
                new_keys.append(dict(idempotency_key=key, job_ids=ids, created_at=t.at))
            ids_per_submission.append(ids)
        if rows:
            self.hot.insert(self._cursor(conn), t, rows)
        if new_keys:
            conn.execute(insert(db.Submission), new_keys)
        self.snapshots.note(snaps)
        return ids_per_submission, dispatches, snaps

    def mark_queued(self, job_ids: Sequence[str], at: dt.datetime | None = None) -> list[job_pb2.Job]:
        """PENDING -> QUEUED once the dispatch is on the broker (``at``: when it got there). Jobs
        already further along are left alone (a fast worker may have started them)."""
        with self.transaction() as conn:
            return self.mark_queued_in(conn, job_ids, at)

    def mark_queued_in(self, conn, job_ids: Sequence[str], at: dt.datetime | None = None) -> list[job_pb2.Job]:
        if not job_ids:
            return []
        t = Now.take()
        queued = Now(at) if at is not None else t

        def change(job, _row):
            job.state = js.JOB_STATE_QUEUED
            job.queue_time.CopyFrom(queued.stamp)

        return self._derived(conn, self.hot.queued(self._cursor(conn), t, queued, list(job_ids)), change)

    def start_jobs(self, job_ids: Sequence[str], worker: str) -> tuple[list[str], list[job_pb2.Job]]:
        """Mark jobs RUNNING for ``worker``; returns the ids to run and the snapshots. A job
        started ``max_attempts`` times already fails here (it keeps killing or failing workers)."""
        with self.transaction() as conn:
            return self.start_jobs_in(conn, job_ids, worker)

    def start_jobs_in(self, conn, job_ids: Sequence[str], worker: str) -> tuple[list[str], list[job_pb2.Job]]:
        if not job_ids:
            return [], []
        t = Now.take()

        def change(job, row):
            job.state = js.JOB_STATE_RUNNING
            job.worker, job.attempts, job.timings.queue_seconds = worker, row[2], row[3] or 0.0
            job.start_time.CopyFrom(t.stamp)

        started = self._derived(conn, self.hot.start(self._cursor(conn), t, list(job_ids), worker), change)
        if len(started) == len(set(job_ids)):  # the usual case: no second statement
            return [j.job_id for j in started], started
        rest = list(set(job_ids) - {j.job_id for j in started})  # finished, unknown, or poison
        poison = [job_to_proto(r) for r in conn.execute(self.sql.poison, self.sql.params(t, ids=rest))]
        self.snapshots.note(poison)
        return [j.job_id for j in started], [*started, *poison]

    def report_results(self, outcomes: Sequence[jc.JobOutcome]) -> tuple[int, list[job_pb2.Job]]:
        """Apply outcomes; one that finds its job already terminal changes nothing."""
        with self.transaction() as conn:
            snaps = self.report_results_in(conn, outcomes)
        return len(snaps), snaps

    def report_results_in(self, conn, outcomes: Sequence[jc.JobOutcome]) -> list[job_pb2.Job]:
        """The snapshots of the jobs the outcomes finished (one per job)."""
        t = Now.take()
        cur = self._cursor(conn)
        active = {r[0]: r for r in self.hot.active(cur, list({o.job_id for o in outcomes}))}
        rows, changed, applied = [], [], {}
        for o in outcomes:
            row = active.pop(o.job_id, None)  # pop: a job reported twice in one batch applies once
            if row is None:
                continue
            total = (t.at - self.hot.created_at(row[2])).total_seconds()
            failed = bool(o.error)
            metrics = metrics_json(o.inference_seconds, row[3], total)
            rows.append((o.job_id, db.FAILED if failed else db.COMPLETED, o.inference_seconds, total,
                         o.error[:4000] if failed else None, None if failed else o.result.SerializeToString(),
                         metrics))
            changed.append((o.job_id, row[1] + 1))
            applied[o.job_id] = (o, total)
        if not rows:
            return []
        self.hot.report(cur, t, rows)

        def change(job, row):
            o, total = applied[row[0]]
            job.state = js.JOB_STATE_FAILED if o.error else js.JOB_STATE_SUCCEEDED
            if o.error:
                job.error = o.error[:4000]
            else:
                job.result.CopyFrom(o.result)
            job.timings.inference_seconds, job.timings.total_seconds = o.inference_seconds, total
            job.end_time.CopyFrom(t.stamp)

        return self._derived(conn, changed, change)

    def cancel(self, job_id: str) -> tuple[job_pb2.Job | None, list[job_pb2.Job]]:
        """(the job now, or None if unknown; the changes to publish)."""
        with self.transaction() as conn:
            return self.cancel_in(conn, job_id)

    def cancel_in(self, conn, job_id: str) -> tuple[job_pb2.Job | None, list[job_pb2.Job]]:
        changed = [job_to_proto(r) for r in conn.execute(self.sql.cancel, self.sql.params(Now.take(), ids=[job_id]))]
        self.snapshots.note(changed)
        if changed:
            return changed[0], changed
        current = self._read_back(conn, [job_id])
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
                select(T.c.job_id, T.c.model_name, T.c.series, T.c.traceparent, T.c.horizon)
                .where(T.c.status.in_(list(statuses)), T.c.updated_at < cutoff)
                .order_by(T.c.updated_at)
                .limit(limit)
            ).all()
            if not rows:
                return [], []
            # A job may finish between the SELECT and this UPDATE, or another replica's reconciler
            # may send it again first: only the rows still active and still unchanged go out again,
            # or that job would run twice or its terminal state be published a second time.
            snaps = [job_to_proto(r) for r in conn.execute(
                update(T)
                .where(T.c.job_id.in_([r.job_id for r in rows]), T.c.status.in_(db.ACTIVE),
                       T.c.updated_at < cutoff)
                .values(status=db.QUEUED, queued_at=t, updated_at=t, dispatches=T.c.dispatches + 1,
                        version=T.c.version + 1)
                .returning(*SNAPSHOT)
            )]
            self.snapshots.note(snaps)
            changed = {j.job_id for j in snaps}
            dispatches = [
                TaskJob(job_id=r.job_id, model_name=r.model_name, traceparent=r.traceparent or "",
                        horizon=r.horizon or 0, values=timeseries_pb2.TimeSeries.FromString(r.series).values)
                for r in rows if r.job_id in changed
            ]
            return dispatches, snaps

    # --- reads --------------------------------------------------------------------------

    def changed_between(self, since: dt.datetime, until: dt.datetime, limit: int) -> list[job_pb2.Job]:
        """Snapshots of the jobs whose last change is stamped in [since, until], oldest first (the
        status index answers it, one range per status)."""
        statuses = list(db.ACTIVE + db.TERMINAL)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*SNAPSHOT).where(T.c.status.in_(statuses), T.c.updated_at >= since,
                                                        T.c.updated_at <= until)
                                .order_by(T.c.updated_at).limit(limit))
            return [job_to_proto(r) for r in rows]

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

    def unfinished(self) -> int:
        """Jobs PENDING, QUEUED or RUNNING (the status index answers it)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(T).where(T.c.status.in_(list(db.ACTIVE)))).scalar()

    def counts(self) -> dict[str, dict[str, int]]:
        """{model: {status: count}} over every stored job."""
        with Session(self.engine) as session:
            out: dict[str, dict[str, int]] = {}
            for model, status, n in session.execute(
                select(R.model_name, R.status, func.count()).group_by(R.model_name, R.status)
            ):
                out.setdefault(model, {})[status] = n
            return out

    def unfinished_counts(self) -> dict[str, int]:
        """{status: count} of the unfinished jobs (the status index answers it)."""
        with Session(self.engine) as session:
            return dict(session.execute(select(R.status, func.count()).where(R.status.in_(db.ACTIVE))
                                        .group_by(R.status)).all())

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

"""The store's SQL: the four writes every job goes through (create, queued, start, report) in the
driver's own SQL, and the rarer ones as SQLAlchemy Core statements.

The hot writes run on the DBAPI cursor of the transaction's connection: SQLAlchemy's per-statement
and per-row work (compiled-cache lookups, bind and result processors, Row objects) cost the
orchestrator more CPU than the database did (py-spy at 1,000 jobs/s offered). Each is written once
per dialect: sqlite3 (``?`` placeholders, id lists as a JSON array read by ``json_each``) and
psycopg2 (``%s``, id lists as arrays, multi-row VALUES pages instead of a round trip per row).
Times are written as SQLAlchemy writes them, so its reads (GetJob, ListJobs, stats) see the same.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from functools import cached_property

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import DateTime, String, bindparam, func, select, update

from orchestrator_svc import db

T = db.InferenceResult.__table__
SNAPSHOT = [c for c in T.c if c.name != "series"]  # what an event carries
POISON_ERROR = "gave up after"  # how a poison job's error begins (metrics count them by it)
ACTIVE_SQL = "('pending', 'queued', 'running')"
INSERT_COLUMNS = ("job_id, model_name, status, created_at, updated_at, metrics, series_id, series_length, labels, "
                  "series, attempts, dispatches, version, idempotency_key, traceparent, horizon")


@dataclass(frozen=True)
class Now:
    """One transaction's time, in the forms the two drivers take."""

    at: dt.datetime  # aware, UTC

    @staticmethod
    def take() -> "Now":
        return Now(dt.datetime.now(dt.timezone.utc))

    @cached_property
    def stamp(self) -> Timestamp:
        """As a snapshot's timestamps hold it (copied into each: cheaper than converting per job)."""
        return Timestamp(seconds=int(self.at.timestamp()), nanos=self.at.microsecond * 1000)

    @property
    def text(self) -> str:  # SQLite keeps naive UTC text, as SQLAlchemy's DateTime writes it
        return self.at.strftime("%Y-%m-%d %H:%M:%S.%f")


def metrics_json(inference: float, queue: float | None, total: float) -> str:
    """The older system's metrics column, as ``json.dumps`` writes it, at a quarter of its cost."""
    return f'{{"inference_time": {_number(inference)}, "queue_time": {_number(queue)}, "total_time": {_number(total)}}}'


def _number(x: float | None) -> str:
    return "null" if x is None else repr(float(x)) if math.isfinite(x) else json.dumps(x)


class Hot:
    """create, queued, start, report on a DBAPI cursor. Each returns plain tuples."""

    def __init__(self, dialect: str, max_attempts: int):
        self.sqlite = dialect == "sqlite"
        self.max_attempts = max_attempts
        if self.sqlite:
            # "+status": the planner cannot tell how short the json_each list is and would scan the
            # status index (every active job) instead of looking each id up by primary key.
            ids = "job_id IN (SELECT value FROM json_each(?))"
            age = "(julianday(?) - julianday(created_at)) * 86400.0"
        else:
            ids = "job_id = ANY(%s)"
            age = "EXTRACT(EPOCH FROM (%s - created_at))"
        p = "?" if self.sqlite else "%s"
        st = "+status" if self.sqlite else "status"
        self._insert = (f"INSERT INTO inference_results ({INSERT_COLUMNS}) VALUES "
                        + (f"({p}, {p}, 'pending', {p}, {p}, '{{}}', {p}, {p}, {p}, {p}, 0, 1, 1, {p}, {p}, {p})"
                           if self.sqlite else "%s"))
        self._queued = (f"UPDATE inference_results SET status = 'queued', queued_at = {p}, updated_at = {p}, "
                        f"version = version + 1 WHERE {ids} AND {st} = 'pending' RETURNING job_id, version")
        self._start = (f"UPDATE inference_results SET status = 'running', started_at = {p}, worker = {p}, "
                       f"attempts = attempts + 1, queue_seconds = {age}, updated_at = {p}, version = version + 1 "
                       f"WHERE {ids} AND {st} IN {ACTIVE_SQL} AND attempts < {p} "
                       "RETURNING job_id, version, attempts, queue_seconds")
        self._active = (f"SELECT job_id, version, created_at, queue_seconds FROM inference_results WHERE {ids} "
                        f"AND {st} IN {ACTIVE_SQL}" + ("" if self.sqlite else " FOR UPDATE"))
        if self.sqlite:
            self._report = ("UPDATE inference_results SET status = ?, finished_at = ?, updated_at = ?, "
                            "version = version + 1, inference_seconds = ?, total_seconds = ?, error = ?, "
                            f"result_proto = ?, metrics = ? WHERE job_id = ? AND status IN {ACTIVE_SQL}")
        else:
            self._report = ("UPDATE inference_results AS r SET status = v.status, finished_at = v.t, "
                            "updated_at = v.t, version = r.version + 1, inference_seconds = v.inference, "
                            "total_seconds = v.total, error = v.error, result_proto = v.result, "
                            "metrics = v.metrics FROM (VALUES %s) "
                            "AS v(job_id, status, t, inference, total, error, result, metrics) "
                            f"WHERE r.job_id = v.job_id AND r.status IN {ACTIVE_SQL}")

    def _t(self, now: Now):
        return now.text if self.sqlite else now.at

    def _ids(self, ids: list[str]):
        return json.dumps(ids) if self.sqlite else ids

    def insert(self, cur, now: Now, rows: list[tuple]) -> None:
        """rows: (job_id, model_name, series_id, series_length, labels JSON, series bytes, idempotency_key,
        traceparent, horizon)."""
        t = self._t(now)
        values = [(r[0], r[1], t, t, *r[2:]) for r in rows]
        if self.sqlite:
            cur.executemany(self._insert, values)
        else:
            from psycopg2.extras import execute_values

            execute_values(cur, self._insert, values, page_size=1000,
                           template="(%s, %s, 'pending', %s, %s, '{}', %s, %s, %s, %s, 0, 1, 1, %s, %s, %s)")

    def queued(self, cur, now: Now, at: Now, ids: list[str]) -> list[tuple[str, int]]:
        cur.execute(self._queued, (self._t(at), self._t(now), self._ids(ids)))
        return cur.fetchall()

    def start(self, cur, now: Now, ids: list[str], worker: str) -> list[tuple[str, int, int, float]]:
        t = self._t(now)
        cur.execute(self._start, (t, worker, t, t, self._ids(ids), self.max_attempts))
        return cur.fetchall()

    def active(self, cur, ids: list[str]) -> list[tuple]:
        """(job_id, version, created_at, queue_seconds) of those still active, locked on PostgreSQL."""
        cur.execute(self._active, (self._ids(ids),))
        return cur.fetchall()

    def report(self, cur, now: Now, rows: list[tuple]) -> None:
        """rows: (job_id, status, inference_seconds, total_seconds, error, result bytes, metrics JSON)."""
        t = self._t(now)
        if self.sqlite:
            cur.executemany(self._report, [(r[1], t, t, r[2], r[3], r[4], r[5], r[6], r[0]) for r in rows])
        else:
            from psycopg2.extras import execute_values

            execute_values(cur, self._report, [(r[0], r[1], t, *r[2:]) for r in rows], page_size=1000,
                           template="(%s, %s, %s::timestamptz, %s::float8, %s::float8, %s, %s::bytea, %s::json)")

    def created_at(self, value) -> dt.datetime:
        """A created_at as this driver returns it, as an aware datetime."""
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class Rare:
    """The writes that are not on every job's path, and the snapshot read, as SQLAlchemy Core
    statements built once. Bound parameters: ``ids`` (a list), ``t`` (now) and ``t_text`` (now as
    SQLite stores it), plus each statement's own."""

    def __init__(self, dialect: str, max_attempts: int):
        ids = T.c.job_id.in_(bindparam("ids", expanding=True))
        active = T.c.status.in_(db.ACTIVE)
        t = bindparam("t", type_=DateTime(timezone=True))
        if dialect == "sqlite":  # julianday() reads the ISO strings SQLite stores
            age = (func.julianday(bindparam("t_text", type_=String)) - func.julianday(T.c.created_at)) * 86400.0
        else:
            age = func.extract("epoch", t - T.c.created_at)
        bump = dict(updated_at=t, version=T.c.version + 1)
        self.poison = (
            update(T).where(ids, active, T.c.attempts >= max_attempts)
            .values(status=db.FAILED, finished_at=t, total_seconds=age, **bump,
                    error=f"{POISON_ERROR} {max_attempts} attempts: the job never finished on a worker")
            .returning(*SNAPSHOT)
        )
        self.cancel = (
            update(T).where(ids, active)
            .values(status=db.CANCELLED, finished_at=t, total_seconds=age, error="cancelled by request", **bump)
            .returning(*SNAPSHOT)
        )
        self.snapshots = select(*SNAPSHOT).where(ids)

    @staticmethod
    def params(now: Now, **more) -> dict:
        return {"t": now.at, "t_text": now.text, **more}

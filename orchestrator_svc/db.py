"""The job table and the idempotency table. Schema changes go through Alembic (migrations/).

``inference_results`` keeps the older system's columns and meanings (job_id, model_name,
status with 'completed' for success, created_at, JSON metrics with inference_time in
seconds) so its documented SQL runs unchanged; one row is one job.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from satkit.settings import sqlalchemy_url

PENDING, QUEUED, RUNNING = "pending", "queued", "running"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
TERMINAL = (COMPLETED, FAILED, CANCELLED)
ACTIVE = (PENDING, QUEUED, RUNNING)


class Base(DeclarativeBase):
    pass


class InferenceResult(Base):
    __tablename__ = "inference_results"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # {"inference_time": s, "queue_time": s, "total_time": s}, as the older system kept it.
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    # The same timings as columns, for stats queries that should not parse JSON.
    queue_seconds: Mapped[float | None] = mapped_column(Float)
    inference_seconds: Mapped[float | None] = mapped_column(Float)
    total_seconds: Mapped[float | None] = mapped_column(Float)
    # satlas.v1.JobResult, serialised (migration 0002); rows from before it have it as JSON in ``result``.
    result_proto: Mapped[bytes | None] = mapped_column(LargeBinary)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    series_id: Mapped[str | None] = mapped_column(String(256))
    series_length: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    # The submitted satlas.v1.TimeSeries, serialised: the worker's input and GetJob's series.
    series: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    dispatches: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(256))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # W3C traceparent (migration 0003): Job.trace_id, and the parent of the job's later spans.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    # Forecast points asked for (migration 0004); null: the model's whole horizon.
    horizon: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_inference_results_created_at", "created_at"),
        Index("ix_inference_results_model_created", "model_name", "created_at"),
        Index("ix_inference_results_status_updated", "status", "updated_at"),
        Index("ix_inference_results_finished_at", "finished_at"),
    )


class Submission(Base):
    """One accepted request with an idempotency key, and the job ids it got."""

    __tablename__ = "submissions"

    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_ids: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def make_engine(url: str, **kwargs) -> Engine:
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # WAL: readers don't wait for the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=8, max_overflow=8)
    # An executemany UPDATE (the results of a group) in pages of statements, not a round trip per row.
    kwargs.setdefault("executemany_mode", "values_plus_batch")
    return create_engine(url, pool_pre_ping=True, **kwargs)

"""Rows of inference_results <-> satlas.v1 messages."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from satlas.v1 import job_pb2, job_state_pb2, timeseries_pb2

from orchestrator_svc import db
from satkit.jobs import TERMINAL_STATES
from satkit.tracing import trace_id

STATE_OF_STATUS = {
    db.PENDING: job_state_pb2.JOB_STATE_PENDING,
    db.QUEUED: job_state_pb2.JOB_STATE_QUEUED,
    db.RUNNING: job_state_pb2.JOB_STATE_RUNNING,
    db.COMPLETED: job_state_pb2.JOB_STATE_SUCCEEDED,
    db.FAILED: job_state_pb2.JOB_STATE_FAILED,
    db.CANCELLED: job_state_pb2.JOB_STATE_CANCELLED,
}
STATUS_OF_STATE = {v: k for k, v in STATE_OF_STATUS.items()}
assert TERMINAL_STATES == {STATE_OF_STATUS[s] for s in db.TERMINAL}  # the store's and the contract's agree


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(utc(value))
    return ts


def result_from_json(data: dict) -> job_pb2.JobResult:
    """A result as rows before migration 0002 kept it."""
    return job_pb2.JobResult(
        predictions=data.get("predictions", ()),
        anomaly_scores=data.get("anomaly_scores", ()),
        anomaly_score=data.get("anomaly_score", 0.0),
        anomaly_flag=data.get("anomaly_flag", False),
        model_version=data.get("model_version", ""),
        outputs={k: job_pb2.Values(values=v) for k, v in data.get("outputs", {}).items()},
    )


def job_to_proto(row: db.InferenceResult, *, with_series: bool = False) -> job_pb2.Job:
    job = job_pb2.Job(
        job_id=row.job_id,
        model_name=row.model_name,
        state=STATE_OF_STATUS[row.status],
        error=row.error or "",
        series_id=row.series_id or "",
        labels=row.labels or {},
        series_length=row.series_length,
        attempts=row.attempts,
        version=row.version,
        worker=row.worker or "",
        trace_id=trace_id(row.traceparent),
        create_time=_timestamp(row.created_at),
        queue_time=_timestamp(row.queued_at),
        start_time=_timestamp(row.started_at),
        end_time=_timestamp(row.finished_at),
        timings=job_pb2.JobTimings(
            queue_seconds=row.queue_seconds or 0.0,
            inference_seconds=row.inference_seconds or 0.0,
            total_seconds=row.total_seconds or 0.0,
        ),
    )
    if row.result_proto:
        job.result.ParseFromString(row.result_proto)
    elif row.result:
        job.result.CopyFrom(result_from_json(row.result))
    if with_series:
        job.series.CopyFrom(timeseries_pb2.TimeSeries.FromString(row.series))
    return job

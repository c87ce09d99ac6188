from satlas.v1 import job_pb2 as _job_pb2
from satlas.v1 import timeseries_pb2 as _timeseries_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateJobsRequest(_message.Message):
    __slots__ = ("submissions",)
    SUBMISSIONS_FIELD_NUMBER: _ClassVar[int]
    submissions: _containers.RepeatedCompositeFieldContainer[Submission]
    def __init__(self, submissions: _Optional[_Iterable[_Union[Submission, _Mapping]]] = ...) -> None: ...

class Submission(_message.Message):
    __slots__ = ("series", "models", "idempotency_key", "traceparent", "horizon")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    series: _timeseries_pb2.TimeSeries
    models: _containers.RepeatedScalarFieldContainer[str]
    idempotency_key: str
    traceparent: str
    horizon: int
    def __init__(self, series: _Optional[_Union[_timeseries_pb2.TimeSeries, _Mapping]] = ..., models: _Optional[_Iterable[str]] = ..., idempotency_key: _Optional[str] = ..., traceparent: _Optional[str] = ..., horizon: _Optional[int] = ...) -> None: ...

class CreateJobsResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: _containers.RepeatedCompositeFieldContainer[CreatedJobs]
    def __init__(self, created: _Optional[_Iterable[_Union[CreatedJobs, _Mapping]]] = ...) -> None: ...

class CreatedJobs(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StartJobsRequest(_message.Message):
    __slots__ = ("job_ids", "worker")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    worker: str
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., worker: _Optional[str] = ...) -> None: ...

class StartJobsResponse(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportResultsRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[JobOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[JobOutcome, _Mapping]]] = ...) -> None: ...

class JobOutcome(_message.Message):
    __slots__ = ("job_id", "result", "error", "inference_seconds", "traceparent")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    result: _job_pb2.JobResult
    error: str
    inference_seconds: float
    traceparent: str
    def __init__(self, job_id: _Optional[str] = ..., result: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., error: _Optional[str] = ..., inference_seconds: _Optional[float] = ..., traceparent: _Optional[str] = ...) -> None: ...

class ReportResultsResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    def __init__(self, applied: _Optional[int] = ...) -> None: ...

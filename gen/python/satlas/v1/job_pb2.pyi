import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from satlas.v1 import job_state_pb2 as _job_state_pb2
from satlas.v1 import timeseries_pb2 as _timeseries_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Job(_message.Message):
    __slots__ = ("job_id", "model_name", "state", "result", "error", "series_id", "labels", "series_length", "attempts", "version", "create_time", "queue_time", "start_time", "end_time", "timings", "series", "worker", "trace_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SERIES_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model_name: str
    state: _job_state_pb2.JobState
    result: JobResult
    error: str
    series_id: str
    labels: _containers.ScalarMap[str, str]
    series_length: int
    attempts: int
    version: int
    create_time: _timestamp_pb2.Timestamp
    queue_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    timings: JobTimings
    series: _timeseries_pb2.TimeSeries
    worker: str
    trace_id: str
    def __init__(self, job_id: _Optional[str] = ..., model_name: _Optional[str] = ..., state: _Optional[_Union[_job_state_pb2.JobState, str]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[str] = ..., series_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., series_length: _Optional[int] = ..., attempts: _Optional[int] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timings: _Optional[_Union[JobTimings, _Mapping]] = ..., series: _Optional[_Union[_timeseries_pb2.TimeSeries, _Mapping]] = ..., worker: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...

class JobTimings(_message.Message):
    __slots__ = ("queue_seconds", "inference_seconds", "total_seconds")
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queue_seconds: float
    inference_seconds: float
    total_seconds: float
    def __init__(self, queue_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("predictions", "anomaly_scores", "anomaly_score", "anomaly_flag", "model_version", "outputs", "quantiles")
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Values
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Values, _Mapping]] = ...) -> None: ...
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORES_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORE_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FLAG_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedScalarFieldContainer[float]
    anomaly_scores: _containers.RepeatedScalarFieldContainer[float]
    anomaly_score: float
    anomaly_flag: bool
    model_version: str
    outputs: _containers.MessageMap[str, Values]
    quantiles: _containers.RepeatedCompositeFieldContainer[QuantileForecast]
    def __init__(self, predictions: _Optional[_Iterable[float]] = ..., anomaly_scores: _Optional[_Iterable[float]] = ..., anomaly_score: _Optional[float] = ..., anomaly_flag: _Optional[bool] = ..., model_version: _Optional[str] = ..., outputs: _Optional[_Mapping[str, Values]] = ..., quantiles: _Optional[_Iterable[_Union[QuantileForecast, _Mapping]]] = ...) -> None: ...

class QuantileForecast(_message.Message):
    __slots__ = ("level", "values")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    level: float
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, level: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

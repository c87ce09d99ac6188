from satlas.v1 import timeseries_pb2 as _timeseries_pb2
from satlas.v1 import validation_pb2 as _validation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitSeriesRequest(_message.Message):
    __slots__ = ("series", "models", "idempotency_key", "horizon")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    series: _timeseries_pb2.TimeSeries
    models: _containers.RepeatedScalarFieldContainer[str]
    idempotency_key: str
    horizon: int
    def __init__(self, series: _Optional[_Union[_timeseries_pb2.TimeSeries, _Mapping]] = ..., models: _Optional[_Iterable[str]] = ..., idempotency_key: _Optional[str] = ..., horizon: _Optional[int] = ...) -> None: ...

class SubmitSeriesResponse(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchSubmitSeriesRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubmitSeriesRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SubmitSeriesRequest, _Mapping]]] = ...) -> None: ...

class BatchSubmitSeriesResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SubmitSeriesResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SubmitSeriesResponse, _Mapping]]] = ...) -> None: ...

class StreamSeriesRequest(_message.Message):
    __slots__ = ("submission", "sequence")
    SUBMISSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    submission: SubmitSeriesRequest
    sequence: int
    def __init__(self, submission: _Optional[_Union[SubmitSeriesRequest, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class StreamSeriesResponse(_message.Message):
    __slots__ = ("sequence", "job_ids", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    error: SubmitError
    def __init__(self, sequence: _Optional[int] = ..., job_ids: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[SubmitError, _Mapping]] = ...) -> None: ...

class SubmitError(_message.Message):
    __slots__ = ("code", "message", "field_violations")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

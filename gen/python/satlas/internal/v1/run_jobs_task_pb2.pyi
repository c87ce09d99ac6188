from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunJobsTask(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TaskJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[TaskJob, _Mapping]]] = ...) -> None: ...

class TaskJob(_message.Message):
    __slots__ = ("job_id", "model_name", "values", "traceparent", "horizon")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model_name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    traceparent: str
    horizon: int
    def __init__(self, job_id: _Optional[str] = ..., model_name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., traceparent: _Optional[str] = ..., horizon: _Optional[int] = ...) -> None: ...

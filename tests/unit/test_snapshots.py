"""orchestrator_svc.snapshots: an event is derived only from the snapshot exactly one version
older; finished jobs are forgotten; the cache stays bounded; handed-out snapshots never change."""

from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from orchestrator_svc.snapshots import Snapshots


def job(job_id: str, version: int, state=js.JOB_STATE_PENDING) -> job_pb2.Job:
    return job_pb2.Job(job_id=job_id, version=version, state=state, model_name="m")


def queue(j: job_pb2.Job) -> None:
    j.state = js.JOB_STATE_QUEUED


def test_derives_only_from_the_version_before():
    held = Snapshots()
    first = job("a", 1)
    held.note([first])
    second = held.derive("a", 2, queue)
    assert (second.version, second.state, second.model_name) == (2, js.JOB_STATE_QUEUED, "m")
    assert first.state == js.JOB_STATE_PENDING  # the published snapshot is untouched
    held.note([second])
    assert held.derive("a", 2, queue) is None  # changed elsewhere meanwhile: read it instead
    assert held.derive("a", 4, queue) is None
    assert held.derive("unknown", 1, queue) is None


def test_finished_jobs_are_forgotten_and_the_cache_is_bounded():
    held = Snapshots(limit=3)
    held.note([job(str(i), 1) for i in range(5)])
    assert len(held) == 3 and held.derive("0", 2, queue) is None and held.derive("4", 2, queue) is not None
    held.note([job("4", 3, js.JOB_STATE_SUCCEEDED)])
    assert held.derive("4", 4, queue) is None and len(held) == 2


def test_forgotten_jobs_are_read_again():
    held = Snapshots()
    held.note([job("a", 1), job("b", 1)])
    held.forget(["a", "unknown"])
    assert held.derive("a", 2, queue) is None and held.derive("b", 2, queue) is not None

"""The orchestrator's servicers in-process on port 0 (``satkit.server.running``), against a real
SQLite file and the machine's Redis: the RPCs' answers, errors and the message each job is
dispatched in, with no other process of the mesh."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from functools import partial

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kombu import Connection
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc
from satlas.v1 import job_pb2, timeseries_pb2
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc
from support import queued_tasks

from orchestrator_svc.__main__ import lifespan, register
from orchestrator_svc.settings import Settings
from satkit import server
from satkit.jobs import watched
from satkit.queue import QUEUE

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: the queue is read back below


def purge() -> None:
    with Connection(REDIS_URL, connect_timeout=5) as conn:
        conn.default_channel.queue_purge(QUEUE)


def queued_jobs() -> list[str]:
    """Job ids of every message on the queue, in order (consumes them)."""
    return [job.job_id for task in queued_tasks(REDIS_URL) for job in task]


@pytest.fixture()
async def orchestrator(tmp_path):
    purge()
    settings = replace(Settings(), address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
                       redis_url=REDIS_URL, broker_url=REDIS_URL, dispatch_linger_s=0.0)
    async with server.running(settings.address, partial(lifespan, settings), register) as r:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{r.port}") as channel:
            yield opb_grpc.OrchestratorServiceStub(channel), jc_grpc.JobControlServiceStub(channel), r.resources
    purge()


def submission(n: int = 8, models=("vae_timeseries",), key: str = "") -> jc.Submission:
    return jc.Submission(series=timeseries_pb2.TimeSeries(values=[float(i) for i in range(n)], series_id="s"),
                         models=list(models), idempotency_key=key)


async def state_becomes(public, job_id: str, state: int, timeout: float = 10.0) -> job_pb2.Job:
    async with asyncio.timeout(timeout):
        while (job := (await public.GetJob(opb.GetJobRequest(job_id=job_id))).job).state != state:
            await asyncio.sleep(0.02)
    return job


def violations(exc: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(exc)
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    return [v.field for v in bad.field_violations]


async def test_a_job_goes_through_its_four_states_and_each_change_is_watched(orchestrator):
    public, control, _ = orchestrator
    created = await control.CreateJobs(jc.CreateJobsRequest(submissions=[submission()]))
    (job_id,) = created.created[0].job_ids
    watch = public.WatchJob(opb.WatchJobRequest(job_id=job_id))
    await state_becomes(public, job_id, js.JOB_STATE_QUEUED)
    assert queued_jobs() == [job_id]  # the message the worker would get carries it
    started = await control.StartJobs(jc.StartJobsRequest(job_ids=[job_id], worker="test@host"))
    assert list(started.job_ids) == [job_id]
    result = job_pb2.JobResult(anomaly_scores=[0.1] * 8, anomaly_score=0.1, model_version="1")
    reported = await control.ReportResults(jc.ReportResultsRequest(outcomes=[
        jc.JobOutcome(job_id=job_id, result=result, inference_seconds=0.004)]))
    assert reported.applied == 1
    seen = []
    async for response in watch:
        seen.append(response.job.state)
        if response.job.state == js.JOB_STATE_SUCCEEDED:
            break
    assert seen[-1] == js.JOB_STATE_SUCCEEDED and seen == sorted(seen)
    job = (await public.GetJob(opb.GetJobRequest(job_id=job_id))).job
    assert (job.worker, job.result.anomaly_score, job.timings.inference_seconds) == ("test@host", 0.1, 0.004)
    again = await control.ReportResults(jc.ReportResultsRequest(outcomes=[jc.JobOutcome(job_id=job_id, error="x")]))
    assert again.applied == 0  # a terminal job stays as it ended


async def test_a_batched_watch_gets_the_same_events_in_fewer_messages(orchestrator):
    public, control, _ = orchestrator
    wanted = dict(model_names=["vae_timeseries"], states=[js.JOB_STATE_PENDING])
    plain = public.WatchJobs(opb.WatchJobsRequest(**wanted))
    batched = public.WatchJobs(opb.WatchJobsRequest(**wanted, batched=True))
    for call in (plain, batched):
        await call.initial_metadata()
    models = ("vae_timeseries", "transformer_timeseries")
    created = await control.CreateJobs(jc.CreateJobsRequest(submissions=[submission(models=models)] * 20))
    expected = [c.job_ids[0] for c in created.created]  # one transaction: 40 jobs, 20 of them the VAE's
    messages = [await batched.read()]
    while sum(len(m.jobs) for m in messages) < 20:
        messages.append(await batched.read())
    assert len(messages) == 1 and not messages[0].HasField("job")  # what committed together comes together
    assert [j.job_id for m in messages for j in m.jobs] == expected
    assert [(await plain.read()).job.job_id for _ in expected] == expected  # one message each, as before
    assert {j.state for j in messages[0].jobs} == {js.JOB_STATE_PENDING}
    one = opb.WatchJobsResponse(job=messages[0].jobs[0])  # what a plain watch sends
    assert watched(messages[0]) == list(messages[0].jobs) and watched(one) == [one.job]
    assert watched(opb.WatchJobsResponse()) == []
    plain.cancel()
    batched.cancel()


async def test_one_submission_makes_a_job_per_model_and_a_key_makes_it_once(orchestrator):
    public, control, _ = orchestrator
    key = uuid.uuid4().hex
    request = jc.CreateJobsRequest(submissions=[submission(models=("vae_timeseries", "transformer_timeseries"),
                                                           key=key)])
    first = (await control.CreateJobs(request)).created[0].job_ids
    second = (await control.CreateJobs(request)).created[0].job_ids
    assert len(first) == 2 and list(first) == list(second)
    listed = await public.ListJobs(opb.ListJobsRequest(page_size=10))
    assert sorted(j.job_id for j in listed.jobs) == sorted(first)


async def test_a_cancelled_job_is_not_run(orchestrator):
    public, control, _ = orchestrator
    (job_id,) = (await control.CreateJobs(jc.CreateJobsRequest(submissions=[submission()]))).created[0].job_ids
    await state_becomes(public, job_id, js.JOB_STATE_QUEUED)
    cancelled = await public.CancelJob(opb.CancelJobRequest(job_id=job_id))
    assert cancelled.job.state == js.JOB_STATE_CANCELLED
    assert list((await control.StartJobs(jc.StartJobsRequest(job_ids=[job_id], worker="w"))).job_ids) == []


async def test_bad_requests_get_clear_errors_and_write_nothing(orchestrator):
    public, _, _ = orchestrator
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await public.GetJob(opb.GetJobRequest(job_id=str(uuid.uuid4())))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await public.GetJob(opb.GetJobRequest(job_id=""))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(bad.value) == ["job_id"]
    with pytest.raises(grpc.aio.AioRpcError) as too_long:
        await public.CancelJob(opb.CancelJobRequest(job_id="x" * 65))
    assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(too_long.value) == ["job_id"]
    with pytest.raises(grpc.aio.AioRpcError) as bad_page:
        await public.ListJobs(opb.ListJobsRequest(page_token="not a token"))
    assert bad_page.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violations(bad_page.value) == ["page_token"]
    assert not (await public.ListJobs(opb.ListJobsRequest())).jobs


async def test_a_stopping_orchestrator_ends_its_watches_at_once_with_unavailable(orchestrator):
    """What serve does first on SIGTERM (``ending``): watchers learn at once to watch again,
    rather than hold the stop for its whole grace period."""
    public, control, core = orchestrator
    (job_id,) = (await control.CreateJobs(jc.CreateJobsRequest(submissions=[submission()]))).created[0].job_ids
    watch_all = public.WatchJobs(opb.WatchJobsRequest())
    await watch_all.initial_metadata()
    watch_one = public.WatchJob(opb.WatchJobRequest(job_id=job_id))
    await watch_one.read()  # the job as it is now
    core.hub.end_watches()
    late = public.WatchJobs(opb.WatchJobsRequest())  # arrives while the server stops
    for call in (watch_all, watch_one, late):
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(2):
                while await call.read() is not grpc.aio.EOF:
                    pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE

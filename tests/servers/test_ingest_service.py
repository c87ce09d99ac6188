"""Ingest, orchestrator and analysis servicers in-process on port 0, on the session's Triton and
the machine's Redis (no worker: accepted jobs wait QUEUED). What a producer sees: job ids,
field violations, RESOURCE_EXHAUSTED under a backlog, and a stream that goes on past a bad request."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from functools import partial

import grpc
import pytest
from google.rpc import code_pb2
from kombu import Connection
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc
from satlas.v1 import timeseries_pb2
from support import bearer

import analysis_svc.__main__ as analysis_main
import ingest_svc.__main__ as ingest_main
import orchestrator_svc.__main__ as orchestrator_main
from analysis_svc.settings import Settings as AnalysisSettings
from ingest_svc.settings import Settings as IngestSettings
from launcher.triton_local import free_port
from orchestrator_svc.settings import Settings as OrchestratorSettings
from satkit import server
from satkit.queue import QUEUE

REDIS_URL = "redis://127.0.0.1:6379/12"


def purge() -> None:
    with Connection(REDIS_URL, connect_timeout=5) as conn:
        conn.default_channel.queue_purge(QUEUE)


async def start(exits: AsyncExitStack, module, settings) -> str:
    r = await exits.enter_async_context(server.running(settings.address, partial(module.lifespan, settings),
                                                       module.register))
    return f"127.0.0.1:{r.port}"


@asynccontextmanager
async def running(tmp_path, triton, **ingest_settings):
    """(ingest stub, orchestrator stub, analysis stub)."""
    purge()
    async with AsyncExitStack() as exits:
        orchestrator = await start(exits, orchestrator_main, replace(
            OrchestratorSettings(), address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
            redis_url=REDIS_URL, broker_url=REDIS_URL))
        analysis = await start(exits, analysis_main, replace(
            AnalysisSettings(), address="127.0.0.1:0", triton_url=triton.settings.grpc_url))
        ingest = await start(exits, ingest_main, replace(
            IngestSettings(), address="127.0.0.1:0", orchestrator_addr=orchestrator, analysis_addr=analysis,
            **ingest_settings))
        channels = [await exits.enter_async_context(grpc.aio.insecure_channel(a))
                    for a in (ingest, orchestrator, analysis)]
        yield (ipb_grpc.IngestServiceStub(channels[0]), opb_grpc.OrchestratorServiceStub(channels[1]),
               apb_grpc.AnalysisServiceStub(channels[2]))
    purge()


@pytest.fixture()
async def mesh(tmp_path, triton):
    async with running(tmp_path, triton) as stubs:
        yield stubs


def request(values, models=("vae_timeseries", "transformer_timeseries"), key="") -> ipb.SubmitSeriesRequest:
    return ipb.SubmitSeriesRequest(series=timeseries_pb2.TimeSeries(values=values), models=list(models),
                                   idempotency_key=key)


SERIES = [float(i % 7) for i in range(32)]
MODELS = ["vae_timeseries", "transformer_timeseries"]


async def test_a_submission_becomes_one_queued_job_per_model(mesh):
    ingest, orchestrator, _ = mesh
    job_ids = (await ingest.SubmitSeries(request(SERIES), timeout=10)).job_ids
    assert len(job_ids) == 2
    jobs = [(await orchestrator.GetJob(opb.GetJobRequest(job_id=j))).job for j in job_ids]
    assert [j.model_name for j in jobs] == ["vae_timeseries", "transformer_timeseries"]
    assert all(list(j.series.values) == SERIES for j in jobs)


@pytest.mark.parametrize("bad,field", [
    (request([1.0, float("nan")] + SERIES), "series.values[1]"),
    (request(SERIES, models=("no_such_model",)), "models[0]"),
    (request([1.0]), "series.values"),  # shorter than the models take
    (request(SERIES[:3] + [1e300] + SERIES), "series.values[3]"),  # finite, but infinite in the models' FP32
])
async def test_bad_input_names_its_field_and_writes_nothing(mesh, bad, field):
    ingest, orchestrator, _ = mesh
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ingest.SubmitSeries(bad, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in exc.value.details()
    assert not (await orchestrator.ListJobs(opb.ListJobsRequest())).jobs


async def test_a_stream_answers_every_request_in_order_past_a_bad_one(mesh):
    ingest, _, _ = mesh
    requests = [ipb.StreamSeriesRequest(sequence=i, submission=request([float("inf")] if i == 1 else SERIES))
                for i in range(4)]
    answers = [a async for a in ingest.StreamSeries(iter(requests), timeout=20)]
    assert [a.sequence for a in answers] == [0, 1, 2, 3]
    assert answers[1].error.code == code_pb2.INVALID_ARGUMENT and not answers[1].job_ids
    assert all(len(answers[i].job_ids) == 2 and not answers[i].HasField("error") for i in (0, 2, 3))


def violated_fields(exc: grpc.aio.AioRpcError) -> list[str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return [v.field for v in detail.field_violations]


async def test_a_batch_call_answers_each_request_in_order_with_its_own_jobs(mesh):
    ingest, orchestrator, _ = mesh
    series = [[float(i + k % 5) for k in range(32)] for i in range(3)]
    batch = ipb.BatchSubmitSeriesRequest(requests=[
        request(series[0]), request(series[1], models=("transformer_timeseries",)), request(series[2], key="k2")])
    responses = (await ingest.BatchSubmitSeries(batch, timeout=10)).responses
    assert [len(r.job_ids) for r in responses] == [2, 1, 2]
    for values, models, response in zip(series, (MODELS, ["transformer_timeseries"], MODELS), responses):
        jobs = [(await orchestrator.GetJob(opb.GetJobRequest(job_id=j))).job for j in response.job_ids]
        assert [j.model_name for j in jobs] == models
        assert all(list(j.series.values) == values for j in jobs)
    # An idempotency key works inside a batch as in SubmitSeries: the first request's jobs again.
    again = await ingest.BatchSubmitSeries(ipb.BatchSubmitSeriesRequest(requests=[request(series[2], key="k2")]),
                                           timeout=10)
    assert list(again.responses[0].job_ids) == list(responses[2].job_ids)
    assert len((await orchestrator.ListJobs(opb.ListJobsRequest(page_size=100))).jobs) == 5


@pytest.mark.parametrize("bad,field", [
    (request([1.0, float("nan")] + SERIES), "requests[1].series.values[1]"),  # the contract's rules
    (request(SERIES, models=("no_such_model",)), "requests[1].models[0]"),  # the served models'
    (request([1.0]), "requests[1].series.values"),
    (request(SERIES[:3] + [1e300] + SERIES), "requests[1].series.values[3]"),
])
async def test_one_bad_request_fails_the_whole_batch_names_it_and_writes_nothing(mesh, bad, field):
    ingest, orchestrator, _ = mesh
    batch = ipb.BatchSubmitSeriesRequest(requests=[request(SERIES), bad, request(SERIES)])
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ingest.BatchSubmitSeries(batch, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = violated_fields(exc.value)
    assert fields and set(fields) == {field}  # the bad request alone, once for each model that refuses it
    assert not (await orchestrator.ListJobs(opb.ListJobsRequest())).jobs


async def test_a_batch_has_one_request_at_least_and_a_thousand_at_most(mesh):
    ingest, orchestrator, _ = mesh
    for n in (0, 1001):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ingest.BatchSubmitSeries(ipb.BatchSubmitSeriesRequest(requests=[request(SERIES)] * n), timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(exc.value) == ["requests"]
    assert not (await orchestrator.ListJobs(opb.ListJobsRequest())).jobs


async def test_analysis_answers_from_triton_in_process(mesh):
    _, _, analysis = mesh
    models = {m.name for m in (await analysis.ListModels(apb.ListModelsRequest(), timeout=10)).models}
    assert {"vae_timeseries", "transformer_timeseries"} <= models
    reply = await analysis.Analyze(apb.AnalyzeRequest(model_name="transformer_timeseries",
                                                      series=timeseries_pb2.TimeSeries(values=SERIES)), timeout=10)
    assert len(reply.result.predictions) > 0


async def test_a_backlog_past_its_limit_is_refused_with_resource_exhausted(tmp_path, triton):
    """The orchestrator is away, so submissions pile up: past INGEST_MAX_PENDING the ingest refuses
    at once rather than hold the caller."""
    async with AsyncExitStack() as exits:
        analysis = await start(exits, analysis_main, replace(
            AnalysisSettings(), address="127.0.0.1:0", triton_url=triton.settings.grpc_url))
        ingest = await start(exits, ingest_main, replace(
            IngestSettings(), address="127.0.0.1:0", orchestrator_addr=f"127.0.0.1:{free_port()}",
            analysis_addr=analysis, max_pending=2, max_batch=1))
        stub = ipb_grpc.IngestServiceStub(await exits.enter_async_context(grpc.aio.insecure_channel(ingest)))
        calls = [stub.SubmitSeries(request(SERIES), timeout=3) for _ in range(8)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    codes = [o.code() for o in outcomes]
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 4, codes
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}, codes


async def test_a_tokens_quota_counts_jobs_across_calls_and_streams_and_comes_back(tmp_path, triton):
    async with running(tmp_path, triton, quota_jobs_per_s=4, quota_burst=6) as (ingest, orchestrator, _):
        calls = [ingest.SubmitSeries(request(SERIES), timeout=10, metadata=bearer({"jti": "a"})) for _ in range(3)]
        outcomes = [await c for c in calls]  # 2 jobs each: 6, the burst
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ingest.SubmitSeries(request(SERIES), timeout=10, metadata=bearer({"jti": "a"}))
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in exc.value.details()
        written = len((await orchestrator.ListJobs(opb.ListJobsRequest(page_size=100))).jobs)
        assert written == 6 == sum(len(o.job_ids) for o in outcomes)  # the refused one wrote nothing
        # A stream is one call at the edge, but its jobs count one by one; the stream goes on.
        requests = [ipb.StreamSeriesRequest(sequence=i, submission=request(SERIES)) for i in range(5)]
        answers = [a async for a in ingest.StreamSeries(iter(requests), timeout=20, metadata=bearer({"jti": "b"}))]
        assert [a.sequence for a in answers] == list(range(5))
        assert [bool(a.job_ids) for a in answers] == [True, True, True, False, False]
        assert {a.error.code for a in answers[3:]} == {code_pb2.RESOURCE_EXHAUSTED}
        # A batch counts all its jobs at once: refused whole while they do not fit.
        batch = ipb.BatchSubmitSeriesRequest(requests=[request(SERIES)] * 3)  # 6 jobs: the whole burst
        assert len((await ingest.BatchSubmitSeries(batch, timeout=10, metadata=bearer({"jti": "c"}))).responses) == 3
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ingest.BatchSubmitSeries(batch, timeout=10, metadata=bearer({"jti": "c"}))
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in exc.value.details()
        # One past the burst could never pass: the answer says so instead of "retry in".
        batch = ipb.BatchSubmitSeriesRequest(requests=[request(SERIES)] * 4)  # 8 jobs
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ingest.BatchSubmitSeries(batch, timeout=10, metadata=bearer({"jti": "d"}))
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "smaller calls" in exc.value.details()
        # Without a token (an internal caller) nothing is counted.
        assert len((await ingest.SubmitSeries(request(SERIES), timeout=10)).job_ids) == 2
        await asyncio.sleep(0.6)  # 4 jobs a second: two come back
        assert len((await ingest.SubmitSeries(request(SERIES), timeout=10, metadata=bearer({"jti": "a"}))).job_ids) == 2

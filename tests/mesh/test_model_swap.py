"""Models changed while the stack runs (Triton in explicit model-control mode, ModelAdminService):
a reload under load fails no job, an unloaded model's jobs wait until it is back, and a model
Triton's repository does not hold is NOT_FOUND. A stack and a Triton of their own: the session's
Triton serves the other tests."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from mesh_helpers import series, wait_terminal
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import model_admin_service_pb2 as mpb
from satlas.v1 import model_admin_service_pb2_grpc as mpb_grpc
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher.stack import Stack, StackSettings

MODELS = ["vae_timeseries", "transformer_timeseries"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(StackSettings.isolated(tmp_path_factory.mktemp("swap-stack"))) as s:
        yield s


@pytest.fixture(scope="module")
def stubs(stack):
    channels = [grpc.insecure_channel(a) for a in (stack.ingest, stack.orchestrator, stack.analysis)]
    yield (ipb_grpc.IngestServiceStub(channels[0]), opb_grpc.OrchestratorServiceStub(channels[1]),
           apb_grpc.AnalysisServiceStub(channels[2]), mpb_grpc.ModelAdminServiceStub(channels[2]))
    for c in channels:
        c.close()


def ready(analysis) -> dict[str, bool]:
    return {m.name: m.ready for m in analysis.ListModels(apb.ListModelsRequest(), timeout=10).models}


def test_a_reload_under_load_fails_no_job(stubs):
    ingest, orchestrator, analysis, admin = stubs
    ids: list[str] = []
    stop = threading.Event()

    def feed():
        k = 0
        while not stop.is_set():
            ids.extend(ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": series(48, seed=k)},
                                                                   models=MODELS), timeout=30).job_ids)
            k += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        time.sleep(1.0)
        for name in MODELS:  # a reload of each while jobs flow
            reply = admin.LoadModel(mpb.LoadModelRequest(model_name=name), timeout=120)
            assert reply.model.name == name and reply.model.ready and list(reply.model.versions) == ["1"]
        time.sleep(1.0)
    finally:
        stop.set()
        feeder.join()
    jobs = wait_terminal(orchestrator, ids)
    assert len(jobs) > 40
    assert {js.JobState.Name(j.state) for j in jobs.values()} == {"JOB_STATE_SUCCEEDED"}, \
        {j.error for j in jobs.values() if j.error}
    assert {j.result.model_version for j in jobs.values()} == {"1"}  # the job records the version that served it


def test_an_unloaded_models_jobs_wait_and_finish_once_it_is_back(stubs):
    ingest, orchestrator, analysis, admin = stubs
    admin.UnloadModel(mpb.UnloadModelRequest(model_name="vae_timeseries"), timeout=60)
    assert ready(analysis) == {"vae_timeseries": False, "transformer_timeseries": True}
    ids = list(ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": series(32)}, models=MODELS),
                                   timeout=30).job_ids)
    time.sleep(3)  # the worker meets the unloaded model and keeps its job waiting
    with pytest.raises(grpc.RpcError) as info:  # Analyze says so at once
        analysis.Analyze(apb.AnalyzeRequest(model_name="vae_timeseries", series={"values": series(32)}), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    admin.LoadModel(mpb.LoadModelRequest(model_name="vae_timeseries"), timeout=120)
    jobs = wait_terminal(orchestrator, ids, timeout=120)
    assert all(j.state == js.JOB_STATE_SUCCEEDED for j in jobs.values()), [j.error for j in jobs.values()]
    assert ready(analysis) == {"vae_timeseries": True, "transformer_timeseries": True}


def test_a_model_the_repository_does_not_hold_is_not_found(stubs):
    *_, admin = stubs
    for call in (admin.LoadModel, admin.UnloadModel):
        request = (mpb.LoadModelRequest if call is admin.LoadModel else mpb.UnloadModelRequest)(
            model_name="no_such_model")
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()


def test_the_cli_reloads_a_model(stack):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tools.cli", "--analysis", stack.analysis, "load-model",
                          "transformer_timeseries"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "transformer_timeseries" in out.stdout and "ready" in out.stdout

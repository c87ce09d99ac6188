"""Models changed while the stack runs (Triton in explicit model-control mode, ModelAdminService):
a reload under load fails no job, an unloaded model's jobs wait until it is back, a model Triton's
repository does not hold is NOT_FOUND, and a third model (a seasonal-naive forecaster made here as
ONNX) dropped into the repository, then a second version of it, serve jobs through the mesh with no
code change. A stack, a Triton and a model repository of their own."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

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

from launcher import model_repository
from launcher.stack import Stack, StackSettings

ROOT = Path(__file__).resolve().parents[2]

MODELS = ["vae_timeseries", "transformer_timeseries"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The committed models (linked), in a folder the test may add to."""
    root = tmp_path_factory.mktemp("swap-models")
    for model in model_repository.model_dirs(ROOT / "model_repository"):
        (root / model.name).mkdir()  # a config of its own (the reload test changes it), the versions linked
        shutil.copy(model / model_repository.CONFIG, root / model.name / model_repository.CONFIG)
        for version in (v for v in model.iterdir() if v.is_dir() and v.name.isdigit()):
            (root / model.name / version.name).symlink_to(version)
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory, repository):
    settings = StackSettings.isolated(tmp_path_factory.mktemp("swap-stack"))
    settings = replace(settings, triton=replace(settings.triton, model_repository=repository))
    with Stack(settings) as s:
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


def described(repository: Path, name: str, description: str) -> None:
    """The model's config with another description: what makes Triton's load a real reload (an
    unchanged model is left as it is)."""
    path = repository / name / model_repository.CONFIG
    config = model_repository.read_config(path.parent)
    config.parameters["description"].string_value = description
    path.write_text(model_repository.render(config))


def test_a_reload_under_load_fails_no_job(stack, stubs, repository):
    ingest, orchestrator, analysis, admin = stubs
    mirrored = Path(stack.triton.settings.work_dir) / "model_repository"
    for name in MODELS:
        described(repository, name, f"{name}, reloaded")
    deadline = time.monotonic() + 20
    while not all("reloaded" in (mirrored / n / model_repository.CONFIG).read_text() for n in MODELS):
        assert time.monotonic() < deadline, "the stack's Triton repository did not follow"
        time.sleep(0.5)
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
        for name in MODELS:  # a reload of each while jobs flow: the new config is served after it
            reply = admin.LoadModel(mpb.LoadModelRequest(model_name=name), timeout=120)
            assert reply.model.name == name and reply.model.ready and list(reply.model.versions) == ["1"]
            assert reply.model.description == f"{name}, reloaded"
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


HORIZON = 8


def seasonal_naive(model_dir: Path, version: int, period: int, bands: bool = False) -> None:
    """A forecaster of the next HORIZON points: the last ``period`` points again and again, as an
    ONNX graph with its config.pbtxt, as scripts/convert_model.py writes the committed ones. With
    ``bands``, quantiles too: levels 0.1, 0.5, 0.9 at the forecast -1, +0, +2."""
    import onnx
    from onnx import TensorProto, helper

    last = helper.make_node("Slice", ["series", "start", "end", "axis"], ["season"])
    repeated = helper.make_node("Tile", ["season", "reps"], ["tiled"])
    cut = helper.make_node("Slice", ["tiled", "zero", "horizon", "axis"], ["forecast"])
    nodes, outputs = [last, repeated, cut], [helper.make_tensor_value_info("forecast", TensorProto.FLOAT,
                                                                           ["batch", HORIZON])]
    if bands:  # [batch, 3, HORIZON]: the rows the levels name, in the config's order
        nodes += [helper.make_node("Unsqueeze", ["forecast", "one"], ["middle"]),
                  helper.make_node("Add", ["middle", "offsets"], ["bands"])]
        outputs.append(helper.make_tensor_value_info("bands", TensorProto.FLOAT, ["batch", 3, HORIZON]))
    graph = helper.make_graph(
        nodes, "seasonal_naive",
        [helper.make_tensor_value_info("series", TensorProto.FLOAT, ["batch", "n"])], outputs,
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("offsets", TensorProto.FLOAT, [3, 1], [-1.0, 0.0, 2.0]),
                     helper.make_tensor("start", TensorProto.INT64, [1], [-period]),
                     helper.make_tensor("end", TensorProto.INT64, [1], [2**62]),
                     helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("reps", TensorProto.INT64, [2], [1, -(-HORIZON // period)]),
                     helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("horizon", TensorProto.INT64, [1], [HORIZON])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / str(version)).mkdir(parents=True)
    onnx.save(model, model_dir / str(version) / "model.onnx")
    parameters = {"task": "forecast", "horizon": str(HORIZON), "min_length": "4", "max_length": "4096",
                  "output.predictions": "forecast", "description": "seasonal naive: the last season again"}
    tensors = [model_repository.Tensor("forecast", "FP32", (HORIZON,))]
    if bands:
        parameters |= {"output.quantiles": "bands", "quantile_levels": "0.1,0.5,0.9"}
        tensors.append(model_repository.Tensor("bands", "FP32", (3, HORIZON)))
    config = model_repository.gpu_config(model_dir.name, [model_repository.Tensor("series", "FP32", (-1,))],
                                         tensors, max_batch_size=8, parameters=parameters)
    (model_dir / model_repository.CONFIG).write_text(model_repository.render(config))


def until_loaded(admin, name: str, timeout_s: float = 30.0):
    """LoadModel once the stack's Triton sees the new folder (its repository mirror runs every 2 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.LoadModel(mpb.LoadModelRequest(model_name=name), timeout=120).model
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_third_model_dropped_into_the_repository_serves_jobs_and_so_does_its_next_version(stubs, repository):
    ingest, orchestrator, analysis, admin = stubs
    model_dir = repository / "seasonal_naive"
    seasonal_naive(model_dir, version=1, period=4)
    model = until_loaded(admin, "seasonal_naive")
    assert (model.ready, list(model.versions), model.horizon, model.task) == (True, ["1"], HORIZON, "forecast")
    values = [float(v) for v in range(1, 23)]  # ... 19, 20, 21, 22
    ids = [ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": values[: 18 + k]},
                                                       models=["seasonal_naive", "transformer_timeseries"]),
                               timeout=30).job_ids for k in range(4)]
    jobs = wait_terminal(orchestrator, [j for pair in ids for j in pair])
    for k, (naive, other) in enumerate(ids):
        got = jobs[naive]
        assert got.state == js.JOB_STATE_SUCCEEDED, got.error
        season = values[18 + k - 4: 18 + k]
        assert list(got.result.predictions) == season + season and got.result.model_version == "1"
        assert jobs[other].state == js.JOB_STATE_SUCCEEDED
    # Version 2 (a season of 2) beside version 1: a reload serves it; the jobs record it.
    seasonal_naive(model_dir, version=2, period=2)
    deadline = time.monotonic() + 20
    while "2" not in (model := admin.LoadModel(mpb.LoadModelRequest(model_name="seasonal_naive"), timeout=120).model
                      ).versions:
        assert time.monotonic() < deadline, list(model.versions)
        time.sleep(1)  # the mirror has not brought version 2 over yet
    assert model.ready
    (job_id,) = ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": values}, models=["seasonal_naive"],
                                                            horizon=5), timeout=30).job_ids
    job = wait_terminal(orchestrator, [job_id])[job_id]
    assert job.result.model_version == "2" and list(job.result.predictions) == [21.0, 22.0, 21.0, 22.0, 21.0]


def test_a_models_quantiles_arrive_with_the_job_lowest_level_first(stubs, repository):
    ingest, orchestrator, analysis, admin = stubs
    seasonal_naive(repository / "seasonal_bands", version=1, period=4, bands=True)
    until_loaded(admin, "seasonal_bands")
    values = [float(v) for v in range(1, 21)]
    (job_id,) = ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": values}, models=["seasonal_bands"],
                                                            horizon=6), timeout=30).job_ids
    job = wait_terminal(orchestrator, [job_id])[job_id]
    assert job.state == js.JOB_STATE_SUCCEEDED, job.error
    forecast = [17.0, 18.0, 19.0, 20.0, 17.0, 18.0]
    assert list(job.result.predictions) == forecast
    assert [(q.level, list(q.values)) for q in job.result.quantiles] == [
        (0.1, [v - 1 for v in forecast]), (0.5, forecast), (0.9, [v + 2 for v in forecast])]
    assert not job.result.outputs  # the quantile output has its role: not among the unnamed ones
    reply = analysis.Analyze(apb.AnalyzeRequest(model_name="seasonal_bands", series={"values": values}), timeout=10)
    assert [q.level for q in reply.result.quantiles] == [0.1, 0.5, 0.9] and len(reply.result.quantiles[2].values) == 8

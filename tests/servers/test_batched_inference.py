"""Several series in one Triton request: the local server reads the rows of [k, n] as k series,
and the worker's runner sends one request per model and length for models that say they take
that, falls back to one request per job when Triton rejects a batch, and times each job by the
request that carried it. Against the session's real Triton."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as tpb

from analysis_svc import catalogue
from analysis_svc.settings import Settings
from analysis_svc.worker.runner import Runner, batches
from satkit.jobs import DEFAULT_MODELS, MULTI_SERIES
from satkit.queue import TaskJob
from scripts.evaluate import onnx_predictor
from tools import patterns

MODELS = list(DEFAULT_MODELS)


def _series(n: int, seed: int) -> np.ndarray:
    return patterns.random_series(np.random.default_rng(seed), length=n).values.astype(np.float32)


def _requests(client, model: str) -> int:
    return client.get_inference_statistics(model).model_stats[0].inference_stats.success.count


@pytest.mark.parametrize("model", MODELS)
def test_the_rows_of_one_request_are_answered_as_separate_series(triton_client, model):
    rows = np.stack([_series(64, seed=i) for i in range(8)])
    inp = grpcclient.InferInput("values", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    result = triton_client.infer(model, [inp], client_timeout=30)
    expected = onnx_predictor(model)(list(rows))
    for i, row in enumerate(rows):
        for name, value in expected[i].items():
            np.testing.assert_allclose(result.as_numpy(name)[i], value, rtol=1e-4, atol=1e-4 * np.abs(row).max())


@pytest.fixture()
def runner(triton):
    r = Runner(Settings(triton_url=triton.settings.grpc_url, orchestrator_addr="127.0.0.1:9"))  # never called here
    yield r
    r.close()


def _jobs(model: str, n: int, length: int, first: int = 0) -> list[TaskJob]:
    return [TaskJob(job_id=f"{model}-{length}-{i}", model_name=model, values=_series(length, seed=i).tolist())
            for i in range(first, first + n)]


def test_the_runner_sends_one_request_per_model_and_length(runner, triton_client):
    jobs = _jobs("vae_timeseries", 12, 64) + _jobs("transformer_timeseries", 12, 64) + _jobs("vae_timeseries", 3, 100)
    before = {m: _requests(triton_client, m) for m in MODELS}
    outcomes = []
    assert runner._infer(jobs, outcomes) == []
    after = {m: _requests(triton_client, m) for m in MODELS}
    assert after["vae_timeseries"] - before["vae_timeseries"] == 2  # lengths 64 and 100
    assert after["transformer_timeseries"] - before["transformer_timeseries"] == 1
    by_id = {o.job_id: o for o in outcomes}
    assert set(by_id) == {j.job_id for j in jobs} and not any(o.error for o in outcomes)
    for model in MODELS:
        mine = [j for j in jobs if j.model_name == model]
        expected = onnx_predictor(model)([np.asarray(j.values, np.float32) for j in mine])
        first_output = next(iter(expected[0]))
        for job, want in zip(mine, expected):
            got = np.asarray(by_id[job.job_id].result.predictions)
            if model == "transformer_timeseries":
                np.testing.assert_allclose(got, want[first_output].ravel(), rtol=1e-4, atol=1e-3)
            assert by_id[job.job_id].result.model_version == "1"
    # Each job carries the time of its own request: one figure per request, not per message.
    seconds = {m: {by_id[j.job_id].inference_seconds for j in jobs if j.model_name == m} for m in MODELS}
    assert len(seconds["vae_timeseries"]) == 2 and len(seconds["transformer_timeseries"]) == 1
    assert seconds["vae_timeseries"].isdisjoint(seconds["transformer_timeseries"])
    assert all(0 < s < 10 for per in seconds.values() for s in per)


def test_a_rejected_batch_is_sent_again_one_job_per_request_so_a_bad_series_fails_alone(runner):
    jobs = _jobs("vae_timeseries", 6, 64)
    jobs[3].values[10] = float("nan")  # ingest refuses these; Triton is the last line
    outcomes = []
    assert runner._infer(jobs, outcomes) == []
    errors = {o.job_id: o.error for o in outcomes if o.error}
    assert list(errors) == [jobs[3].job_id] and "NaN" in errors[jobs[3].job_id]
    assert sum(1 for o in outcomes if not o.error) == 5


def _config(ragged: bool, max_batch: int, multi: bool | None) -> mc.ModelConfig:
    c = mc.ModelConfig(name="m", max_batch_size=max_batch)
    c.input.add(name="values", data_type=mc.TYPE_FP32, dims=[-1], allow_ragged_batch=ragged)
    if multi is not None:
        c.parameters[MULTI_SERIES].string_value = "true" if multi else "false"
    return c


@pytest.mark.parametrize("ragged, max_batch, multi, expected", [
    (True, 64, None, False),   # Triton's ragged batcher: one offset per request
    (True, 64, True, True),    # the local server's wrapper reads rows as series
    (False, 64, None, True),   # plain batching: [k, n] is k series
    (False, 0, None, False),   # no batch dimension at all
])
def test_which_models_take_several_series_in_one_request(ragged, max_batch, multi, expected):
    metadata = tpb.ModelMetadataResponse(
        name="m", inputs=[tpb.ModelMetadataResponse.TensorMetadata(name="values", datatype="FP32", shape=[-1, -1])])
    info = catalogue.describe("m", ["1"], True, _config(ragged, max_batch, multi), metadata)
    assert info.multi_series is expected


def test_batches_group_by_model_and_length_up_to_the_batch_size():
    one = catalogue.ModelInfo(name="one", versions=("1",), ready=True, max_batch_size=4, multi_series=True)
    solo = catalogue.ModelInfo(name="solo", versions=("1",), ready=True, max_batch_size=4, multi_series=False)
    models = {"one": one, "solo": solo}
    jobs = ([TaskJob(job_id=f"a{i}", model_name="one", values=[0.0] * 8) for i in range(6)]
            + [TaskJob(job_id="b", model_name="one", values=[0.0] * 9)]
            + [TaskJob(job_id=f"s{i}", model_name="solo", values=[0.0] * 8) for i in range(2)])
    got = [(m.name, [j.job_id for j in b]) for m, b in batches(models, jobs)]
    assert sorted(got) == sorted([("one", ["a0", "a1", "a2", "a3"]), ("one", ["a4", "a5"]), ("one", ["b"]),
                                  ("solo", ["s0"]), ("solo", ["s1"])])
    assert all(len(b) == 1 for _, b in batches(models, jobs, alone=True))


def test_a_request_refused_for_a_stale_description_goes_again_with_the_new_one(runner):
    """As after a reload with a new config: the runner's description names an input the model no
    longer has; Triton refuses, the runner reads the model again and the jobs are tried again, not
    failed."""
    from dataclasses import replace

    jobs = _jobs("transformer_timeseries", 3, 64)
    fresh = runner.catalogue.get(refresh=True)
    runner.catalogue.models = {**fresh, "transformer_timeseries": replace(fresh["transformer_timeseries"],
                                                                          input_name="old_name")}
    outcomes = []
    again = runner._infer(jobs, outcomes)
    assert [j.job_id for j in again] == [j.job_id for j in jobs] and outcomes == []
    assert runner._infer(again, outcomes) == []
    assert len(outcomes) == 3 and not any(o.error for o in outcomes)

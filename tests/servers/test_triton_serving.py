"""Both models on the real local Triton: gRPC unary and streaming, dynamic batching, bad input."""

import queue
import threading
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from satkit.jobs import DEFAULT_MODELS
from scripts.evaluate import onnx_predictor
from tools import patterns

MODELS = list(DEFAULT_MODELS)


def _input(values, datatype="FP32", shape=None):
    values = np.asarray(values)
    inp = grpcclient.InferInput("values", list(shape or values.shape), datatype)
    inp.set_data_from_numpy(values)
    return inp


def _series(n, seed=0):
    return patterns.random_series(np.random.default_rng(seed), length=n).values.astype(np.float32)


def test_both_models_are_ready_and_describe_themselves(triton_client):
    index = {m.name: m.state for m in triton_client.get_model_repository_index().models}
    assert index == {"vae_timeseries": "READY", "transformer_timeseries": "READY"}
    meta = triton_client.get_model_metadata("transformer_timeseries")
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("values", "FP32", [-1, -1])]
    assert [(o.name, list(o.shape)) for o in meta.outputs] == [("forecast", [-1, 16]), ("quantiles", [-1, 3, 16])]
    config = triton_client.get_model_config("transformer_timeseries").config
    assert config.parameters["horizon"].string_value == "16"
    assert config.parameters["quantile_levels"].string_value == "0.1,0.5,0.9"
    assert config.parameters["output.quantiles"].string_value == "quantiles"
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    vae = triton_client.get_model_metadata("vae_timeseries")
    assert [o.name for o in vae.outputs] == ["reconstruction", "anomaly_scores", "anomaly_score", "anomaly_flag"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("length", [8, 64, 300, 4096])
def test_unary_infer_gives_what_the_onnx_graph_gives(triton_client, model, length):
    series = _series(length, seed=length)
    result = triton_client.infer(model, [_input(series[None, :])], client_timeout=30)
    (expected,) = onnx_predictor(model)([series])
    for name, value in expected.items():
        got = result.as_numpy(name)
        assert got.shape == (1, *value.shape)
        np.testing.assert_allclose(got[0], value, rtol=1e-4, atol=1e-4 * np.abs(series).max())


def test_stream_infer_answers_every_request(triton_client):
    answers = queue.Queue()
    triton_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        sent = {}
        for i in range(40):
            model = MODELS[i % 2]
            series = _series(8 + 13 * i, seed=i)
            sent[str(i)] = (model, series)
            triton_client.async_stream_infer(model, [_input(series[None, :])], request_id=str(i))
        got = {}
        for _ in sent:
            result, error = answers.get(timeout=30)
            assert error is None, error
            got[result.get_response().id] = result
    finally:
        triton_client.stop_stream()
    assert got.keys() == sent.keys()
    for rid, (model, series) in sent.items():
        (expected,) = onnx_predictor(model)([series])
        name = "forecast" if model == "transformer_timeseries" else "reconstruction"
        np.testing.assert_allclose(got[rid].as_numpy(name)[0], expected[name], rtol=1e-4,
                                   atol=1e-4 * np.abs(series).max())


def _stats(client, model):
    s = client.get_inference_statistics(model).model_stats[0]
    return s.inference_count, s.execution_count


@pytest.mark.parametrize("model", MODELS)
def test_series_of_different_lengths_share_one_dynamic_batch(triton_client, model):
    # All lengths differ, so any execution that serves two requests mixes lengths.
    lengths = sorted({int(n) for n in np.geomspace(8, 4096, 48).round()})
    series = [_series(n, seed=i) for i, n in enumerate(lengths)]
    before = _stats(triton_client, model)
    done, results, lock = threading.Event(), {}, threading.Lock()

    def on_result(i, result, error):
        with lock:
            results[i] = (result, error)
            if len(results) == len(series):
                done.set()

    for i, s in enumerate(series):
        triton_client.async_infer(model, [_input(s[None, :])], partial(on_result, i), client_timeout=30)
    assert done.wait(60)
    inferences, executions = (a - b for a, b in zip(_stats(triton_client, model), before))
    assert inferences == len(series)
    assert executions < len(series), f"{executions} executions for {inferences} requests: nothing was batched"
    expected = onnx_predictor(model)(series)
    for i, s in enumerate(series):
        result, error = results[i]
        assert error is None, error
        for name, value in expected[i].items():
            np.testing.assert_allclose(result.as_numpy(name)[0], value, rtol=1e-4, atol=1e-4 * np.abs(s).max())


@pytest.mark.parametrize(
    "inputs, message",
    [
        (lambda: [_input(np.zeros((1, 4), np.float32))], "has 4 points; this model takes 8 to 4096"),
        (lambda: [_input(np.full((1, 20), np.nan, np.float32))], "NaN or infinite"),
        (lambda: [_input(np.zeros((1, 20), np.int32), "INT32")], "data-type"),
        (lambda: [_input(np.zeros(20, np.float32))], "shape"),
        (lambda: [_input(np.zeros((1, 20), np.float32)), _input(np.zeros((1, 20), np.float32))], "values"),
    ],
    ids=["too-short", "nan", "int32", "no-batch-dim", "duplicate-input"],
)
def test_malformed_tensors_get_a_clear_error_and_the_server_keeps_serving(triton_client, inputs, message):
    with pytest.raises(InferenceServerException) as err:
        triton_client.infer("vae_timeseries", inputs(), client_timeout=10)
    assert message in str(err.value)
    good = triton_client.infer("vae_timeseries", [_input(_series(32)[None, :])], client_timeout=10)
    assert good.as_numpy("anomaly_score").shape == (1, 1)


def test_a_bad_request_fails_alone_inside_a_batch(triton_client):
    answers = queue.Queue()
    triton_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(16):
            values = np.full((1, 4), 1.0, np.float32) if i == 7 else _series(50, seed=i)[None, :]
            triton_client.async_stream_infer("transformer_timeseries", [_input(values)], request_id=str(i))
        outcomes = [answers.get(timeout=30) for _ in range(16)]
    finally:
        triton_client.stop_stream()
    errors = [e for _, e in outcomes if e is not None]
    assert len(errors) == 1 and "has 4 points" in str(errors[0])

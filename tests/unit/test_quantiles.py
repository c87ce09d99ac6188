"""A model's quantile output as JobResult.quantiles: levels from its config, lowest first, never
crossing; a horizon cut applies to them as to the forecast."""

from __future__ import annotations

import numpy as np
from satlas.v1 import job_pb2
from tritonclient.grpc import service_pb2 as tpb

from analysis_svc.catalogue import ModelInfo, _levels
from analysis_svc.tensors import parse_batch_response
from satkit.jobs import cut_to_horizon


def model(levels=(0.9, 0.1, 0.5)) -> ModelInfo:
    return ModelInfo(name="q", versions=("1",), ready=True, horizon=3, quantile_levels=levels,
                     roles={"predictions": "forecast", "quantiles": "bands"})


def response(rows: list[np.ndarray]) -> tpb.ModelInferResponse:
    """Two outputs for each series of a batch: the forecast [3] and the bands [3 levels, 3]."""
    forecast = np.stack([r[2] for r in rows]).astype(np.float32)  # the 0.5 row of each, as given
    bands = np.stack(rows).astype(np.float32)
    r = tpb.ModelInferResponse(model_version="1")
    r.outputs.add(name="forecast", datatype="FP32", shape=list(forecast.shape))
    r.outputs.add(name="bands", datatype="FP32", shape=list(bands.shape))
    r.raw_output_contents.extend([forecast.tobytes(), bands.tobytes()])
    return r


def test_levels_come_lowest_first_and_never_cross():
    # Rows in the config's level order (0.9, 0.1, 0.5); the second series' 0.9 dips below its 0.5.
    first = np.array([[3, 4, 5], [1, 2, 3], [2, 3, 4]])
    second = np.array([[9, 1, 9], [0, 0, 0], [5, 5, 5]])
    a, b = parse_batch_response(model(), response([first, second]), [10, 10])
    assert [(q.level, list(q.values)) for q in a.quantiles] == [(0.1, [1, 2, 3]), (0.5, [2, 3, 4]), (0.9, [3, 4, 5])]
    assert [list(q.values) for q in b.quantiles] == [[0, 0, 0], [5, 5, 5], [9, 5, 9]]
    assert list(a.predictions) == [2, 3, 4] and not a.outputs


def test_without_levels_the_output_stays_a_plain_one():
    (r,) = parse_batch_response(model(levels=()), response([np.ones((3, 3))]), [10])
    assert not r.quantiles and list(r.outputs["bands"].values) == [1.0] * 9


def test_levels_parameter():
    assert _levels("0.1, 0.5,0.9") == (0.1, 0.5, 0.9)
    for bad in ("", "0.1,x", "0,0.5", "0.5,0.5", "1.5"):
        assert _levels(bad) == (), bad


def test_a_horizon_cut_applies_to_every_level():
    r = job_pb2.JobResult(predictions=[1, 2, 3])
    r.quantiles.add(level=0.1, values=[0, 1, 2])
    cut_to_horizon(r, model_horizon=3, asked=2)
    assert list(r.predictions) == [1, 2] and list(r.quantiles[0].values) == [0, 1]


def test_per_point_outputs_keep_each_series_own_last_points():
    # A window-5 model: a series of 3 points owns the last 3 of its row, one of 5 the whole row.
    vae = ModelInfo(name="v", versions=("1",), ready=True, window=5,
                    roles={"predictions": "recon", "anomaly_scores": "scores", "anomaly_score": "score"})
    r = tpb.ModelInferResponse(model_version="2")
    recon = np.arange(10, dtype=np.float32).reshape(2, 5)
    scores = -recon
    score = np.array([[0.5], [0.25]], dtype=np.float32)
    for name, block in (("recon", recon), ("scores", scores), ("score", score), ("extra", recon[:, :2])):
        r.outputs.add(name=name, datatype="FP32", shape=list(block.shape))
        r.raw_output_contents.append(block.tobytes())
    short, whole = parse_batch_response(vae, r, [3, 5])
    assert list(short.predictions) == [2, 3, 4] and list(whole.predictions) == [5, 6, 7, 8, 9]
    assert list(short.anomaly_scores) == [-2, -3, -4] and short.anomaly_score == 0.5 and whole.anomaly_score == 0.25
    assert list(short.outputs["extra"].values) == [0, 1] and short.model_version == "2"


def test_many_series_at_once_match_one_at_a_time():
    rng = np.random.default_rng(7)
    rows = [rng.normal(size=(3, 3)) for _ in range(40)]
    together = parse_batch_response(model(), response(rows), [10] * 40)
    alone = [parse_batch_response(model(), response([row]), [10])[0] for row in rows]
    assert together == alone


def test_series_of_different_lengths_are_refused_as_the_rows_of_one_request():
    from analysis_svc.tensors import build_batch_request

    vae = ModelInfo(name="v", versions=("1",), ready=True, input_name="values")
    assert build_batch_request(vae, [[1.0, 2.0], [3.0, 4.0]]).inputs[0].shape == [2, 2]
    try:
        build_batch_request(vae, [[1.0, 2.0], [3.0, 4.0, 5.0, 6.0]])
    except ValueError as exc:
        assert "lengths [2, 4]" in str(exc)
    else:
        raise AssertionError("mixed lengths were accepted")

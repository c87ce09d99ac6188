"""The quality figures hold through the whole mesh: the same held-out series sent as a producer
sends them (ingest → orchestrator → Celery → worker → Triton → database) give what Triton gives
directly, so every figure of tests/servers/test_model_quality.py holds through the mesh. Not bit for
bit: the worker sends many series per request, and a batch's float32 sums round in another order
(a few parts in a million)."""

from __future__ import annotations

import numpy as np
import pytest

from scripts import evaluate
from tools import patterns


@pytest.fixture(scope="module")
def predictors(shared_stack, triton):
    url = triton.settings.grpc_url
    return {name: (evaluate.triton_predictor(name, url),
                   evaluate.mesh_predictor(name, shared_stack.ingest, shared_stack.orchestrator))
            for name in ("vae_timeseries", "transformer_timeseries")}


def _same(direct: list[dict], meshed: list[dict], names: list[str]) -> None:
    for a, b in zip(direct, meshed, strict=True):
        for name in names:
            np.testing.assert_allclose(b[name], np.asarray(a[name], dtype=np.float64).reshape(b[name].shape),
                                       rtol=1e-4, atol=1e-4, err_msg=name)


def _approx(report: dict) -> dict:
    return {k: _approx(v) if isinstance(v, dict) else pytest.approx(v, abs=2e-3) if isinstance(v, float) else v
            for k, v in report.items()}


def test_the_detectors_figures_are_the_same_through_the_mesh(predictors):
    direct, meshed = predictors["vae_timeseries"]
    a = evaluate.anomaly_quality(direct, 128, size=900)  # a hundred of each pattern and shape
    b = evaluate.anomaly_quality(meshed, 128, size=900)
    assert b == _approx(a)
    assert b["auroc"] >= 0.95 and b["false_positive_rate"] <= 0.05, b


def test_forecasts_and_quantiles_are_the_same_through_the_mesh(predictors):
    direct, meshed = predictors["transformer_timeseries"]
    series = [patterns.random_series(np.random.default_rng(i), length=64 + i).values for i in range(200)]
    _same(direct(series), meshed(series), ["forecast", "quantiles"])
    report = evaluate.forecast_quality(meshed, size=300)
    assert report == _approx(evaluate.forecast_quality(direct, size=300))
    assert report["overall"]["ratio"] <= 0.7, report

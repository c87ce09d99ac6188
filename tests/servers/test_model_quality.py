"""Model quality on held-out series (a seed training never saw), through the served models."""

import numpy as np
import pytest

from scripts import evaluate
from scripts.tsmodels import datasets
from tools import patterns


@pytest.fixture(scope="module")
def forecast(triton):
    return evaluate.forecast_quality(evaluate.triton_predictor("transformer_timeseries", triton.settings.grpc_url),
                                     size=2000)


@pytest.fixture(scope="module")
def anomalies(triton):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.settings.grpc_url)
    window = int(client.get_model_config("vae_timeseries").config.parameters["window"].string_value)
    return evaluate.anomaly_quality(evaluate.triton_predictor("vae_timeseries", triton.settings.grpc_url),
                                    window, size=11000)


def test_transformer_beats_the_naive_forecast_overall(forecast):
    assert forecast["overall"]["ratio"] <= 0.7, forecast


@pytest.mark.parametrize("pattern", ["linear", "seasonal", "random_walk", "exponential", "cyclical"])
def test_transformer_is_never_much_worse_than_naive(forecast, pattern):
    # Naive is already optimal for a pure random walk: there the model must not lose more than 5 %.
    assert forecast[pattern]["ratio"] <= 1.05, forecast[pattern]


def test_vae_tells_anomalous_series_from_clean_ones(anomalies):
    # Half the set is shapes the VAE never saw (tools.patterns.HELD_OUT_SHAPES).
    assert anomalies["auroc"] >= 0.97, anomalies


@pytest.mark.parametrize("shape", patterns.ALL_SHAPES)
def test_vae_holds_on_every_shape(anomalies, shape):
    assert anomalies[shape]["auroc"] >= 0.93, anomalies[shape]


def test_vae_points_at_the_spike(anomalies):
    assert anomalies["spike_top_point_within_2"] >= 0.80, anomalies


def test_vae_flag_rarely_fires_on_clean_series(anomalies):
    assert anomalies["false_positive_rate"] <= 0.05, anomalies


def test_vae_score_is_a_tail_probability_on_clean_series(triton):
    # anomaly_score = -log10 of the share of clean series scoring at least as high: on clean series
    # like the ones it was calibrated on (another seed), 10 % score past 1 and 1 % (the flag) past 2.
    series, _ = datasets.clean_batch(np.random.default_rng(evaluate.HELD_OUT_SEED), 4000)
    outputs = evaluate.triton_predictor("vae_timeseries", triton.settings.grpc_url)(series)
    scores = np.array([float(o["anomaly_score"][0]) for o in outputs])
    flags = np.array([bool(o["anomaly_flag"][0]) for o in outputs])
    assert 0.07 <= (scores > 1).mean() <= 0.13 and 0.004 <= (scores > 2).mean() <= 0.02
    assert np.array_equal(flags, scores > 2)


def test_the_transformers_80_percent_interval_covers_80_percent_of_future_points(forecast):
    # The 0.1-0.9 quantiles: 80 % ± 3 % of held-out points overall (conformally calibrated on another seed).
    assert 0.77 <= forecast["interval_coverage"] <= 0.83, forecast


@pytest.mark.parametrize("pattern", ["linear", "seasonal", "random_walk", "exponential", "cyclical"])
def test_the_interval_is_honest_on_every_pattern(forecast, pattern):
    assert 0.74 <= forecast[f"interval_coverage_{pattern}"] <= 0.86, forecast

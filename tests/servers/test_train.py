"""scripts/train.py: deterministic training and a checkpoint the converter deploys."""

import pytest

torch = pytest.importorskip("torch")

from launcher import model_repository as repo  # noqa: E402
from scripts import convert_model, train  # noqa: E402


@pytest.mark.parametrize("fn", [train.train_vae, train.train_transformer])
def test_same_seed_same_weights(fn):
    a, _ = fn(steps=3, batch=8, seed=5)
    b, _ = fn(steps=3, batch=8, seed=5)
    c, _ = fn(steps=3, batch=8, seed=6)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_checkpoint_to_deployed_model(tmp_path):
    train.main(["--model", "vae", "--steps", "3", "--batch", "8", "--out", str(tmp_path)])
    checkpoint = tmp_path / "vae_timeseries.pt"
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["model_class"] == "scripts.tsmodels:TimeSeriesVAE" and saved["training"]["steps"] == 3
    assert convert_model.main(["--model-path", str(checkpoint), "--model-name", "vae_timeseries",
                               "--repository", str(tmp_path / "repo")]) == 0
    config = repo.read_config(tmp_path / "repo" / "vae_timeseries")
    rate = float(config.parameters["anomaly_false_positive_rate"].string_value)
    assert rate == saved["config"]["false_positive_rate"]
    assert float(config.parameters["anomaly_threshold"].string_value) == pytest.approx(2.0)  # -log10(1 %)
    knots = saved["state_dict"]["tail_knots"]
    assert bool((knots[:, 1:] > knots[:, :-1]).all())  # the detector was calibrated, each table rising


def test_a_quantile_head_beside_a_trained_transformer_leaves_its_forecast_alone(tmp_path):
    import numpy as np

    from scripts.tsmodels import datasets

    train.main(["--model", "transformer", "--steps", "3", "--batch", "8", "--out", str(tmp_path)])
    base = convert_model.load_model(tmp_path / "transformer_timeseries.pt", None)
    model, info = train.train_quantiles(tmp_path / "transformer_timeseries.pt", steps=3, batch=8, seed=5)
    again, _ = train.train_quantiles(tmp_path / "transformer_timeseries.pt", steps=3, batch=8, seed=5)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())  # deterministic
    assert info["quantiles"]["levels"] == (0.1, 0.5, 0.9) and info["quantiles"]["band_scale"] > 0
    values, offsets, _, _ = datasets.forecast_batch(np.random.default_rng(3), 16, model.horizon)
    with torch.no_grad():
        (point,) = base(torch.from_numpy(values), torch.from_numpy(offsets))
        forecast, quantiles = model(torch.from_numpy(values), torch.from_numpy(offsets))
    assert torch.equal(forecast, point) and torch.equal(quantiles[:, 1], forecast)  # the median is the forecast
    assert bool((quantiles[:, 0] <= quantiles[:, 1]).all() and (quantiles[:, 1] <= quantiles[:, 2]).all())
    train.save(model, info, tmp_path / "q.pt")
    assert convert_model.main(["--model-path", str(tmp_path / "q.pt"), "--model-name", "transformer_timeseries",
                               "--repository", str(tmp_path / "repo")]) == 0
    config = repo.read_config(tmp_path / "repo" / "transformer_timeseries")
    assert config.parameters["quantile_levels"].string_value == "0.1,0.5,0.9"
    assert [o.name for o in config.output] == ["forecast", "quantiles"]

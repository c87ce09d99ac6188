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
    threshold = float(config.parameters["anomaly_threshold"].string_value)
    assert threshold == pytest.approx(saved["config"]["threshold"], rel=1e-5)

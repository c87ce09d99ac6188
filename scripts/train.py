"""Train the Satlas models on synthetic series and write checkpoints.

    python -m scripts.train --model all --out scripts/checkpoints

Deterministic: the same seed and step count give the same weights. A checkpoint is a dict
``{"model_class", "config", "state_dict", "training"}`` that ``scripts.convert_model`` reads.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from scripts.tsmodels import TAIL_KNOTS, TAIL_STEP, TimeSeriesTransformer, TimeSeriesVAE, datasets, tail_log10

DEFAULT_OUT = Path(__file__).resolve().parent / "checkpoints"


def _seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def _schedule(opt: torch.optim.Optimizer, step: int, steps: int, lr: float) -> None:
    warmup = max(1, steps // 20)
    factor = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
    for group in opt.param_groups:
        group["lr"] = lr * max(factor, 0.02)


def _fit(name: str, model: torch.nn.Module, steps: int, lr: float, batch_loss) -> float:
    """AdamW with warm-up and cosine decay; ``batch_loss(step)`` draws a batch and returns its loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    started, running, every = time.perf_counter(), 0.0, max(1, steps // 10)
    for step in range(steps):
        _schedule(opt, step, steps, lr)
        loss = batch_loss(step)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if (step + 1) % every == 0:
            print(f"{name} step {step + 1}/{steps} loss {running / every:.4f}", flush=True)
            running = 0.0
    model.eval()
    return round(time.perf_counter() - started, 1)


# Random walks are over-represented: there the naive forecast is already optimal, and a model
# that mistakes one for a trend loses to it; seeing more of them teaches it when to hold still.
FORECAST_MIX = {"linear": 0.15, "seasonal": 0.15, "random_walk": 0.4, "exponential": 0.15, "cyclical": 0.15}


def train_transformer(steps: int, batch: int, seed: int, lr: float = 2e-3) -> tuple[TimeSeriesTransformer, dict]:
    rng = _seed(seed)
    model = TimeSeriesTransformer()

    def batch_loss(_step):
        values, offsets, future, _ = datasets.forecast_batch(rng, batch, model.horizon, weights=FORECAST_MIX)
        return model.loss(torch.from_numpy(values), torch.from_numpy(offsets), torch.from_numpy(future))

    seconds = _fit("transformer", model, steps, lr, batch_loss)
    return model, {"steps": steps, "batch": batch, "seed": seed, "pattern_mix": FORECAST_MIX, "seconds": seconds}


QUANTILE_LEVELS = (0.1, 0.5, 0.9)


def _extend(checkpoint: Path, cls, new: tuple[str, ...], retired: tuple[str, ...] = (), **config):
    """A saved model's weights in ``cls`` built with ``config`` on top of the saved one: only the
    parts named by ``new`` (prefixes) may be missing, only ``retired`` ones left over."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = cls(**{**saved["config"], **config})
    missing, unexpected = model.load_state_dict(saved["state_dict"], strict=False)
    assert all(k.startswith(new) for k in missing) and set(unexpected) <= set(retired), (missing, unexpected)
    return model, saved


def train_quantiles(checkpoint: Path, steps: int, batch: int, seed: int, lr: float = 3e-3
                    ) -> tuple[TimeSeriesTransformer, dict]:
    """The trained Transformer with a quantile head beside it: the network and its point forecast
    stay as they are (frozen), the head learns the low and high quantiles (pinball loss, every
    pattern alike), and a conformal scale then makes the interval cover its share of points on
    series of another seed."""
    rng = _seed(seed)
    model, saved = _extend(checkpoint, TimeSeriesTransformer, ("quantile_head.", "band_scale"),
                           quantile_levels=QUANTILE_LEVELS)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("quantile_head."))

    def batch_loss(_step):
        values, offsets, future, _ = datasets.forecast_batch(rng, batch, model.horizon)
        return model.quantile_loss(torch.from_numpy(values), torch.from_numpy(offsets), torch.from_numpy(future))

    seconds = _fit("quantiles", model, steps, lr, batch_loss)
    scale = calibrate_band(model, np.random.default_rng(seed + 1))
    model.band_scale.fill_(scale)
    print(f"quantile band scale (conformal, {QUANTILE_LEVELS[2] - QUANTILE_LEVELS[0]:.0%} of points): {scale:.3f}")
    return model, {**saved.get("training", {}), "quantiles": {"steps": steps, "batch": batch, "seed": seed,
                                                               "levels": QUANTILE_LEVELS, "band_scale": scale,
                                                               "seconds": seconds}}


def calibrate_band(model: TimeSeriesTransformer, rng: np.random.Generator, size: int = 3000) -> float:
    """The factor on the head's widths at which the low-high interval holds its share of future points."""
    values, offsets, future, _ = datasets.forecast_batch(rng, size, model.horizon)
    with torch.no_grad():
        forecast, quantiles = model(torch.from_numpy(values), torch.from_numpy(offsets))
    low, mid, high = (quantiles[:, i].numpy().astype(np.float64) for i in range(3))
    target = QUANTILE_LEVELS[2] - QUANTILE_LEVELS[0]

    def covered(k: float) -> float:
        return float(np.mean((future >= mid - k * (mid - low)) & (future <= mid + k * (high - mid))))

    lo, hi = 0.1, 10.0
    for _ in range(40):  # coverage grows with the factor
        k = (lo + hi) / 2
        lo, hi = (k, hi) if covered(k) < target else (lo, k)
    return (lo + hi) / 2


def calibrate_detector(model: TimeSeriesVAE, rng: np.random.Generator, size: int = 20000) -> dict:
    """Fills the VAE's tail tables from clean series of the training patterns (a seed of their own):
    each statistic's value at tail probabilities 1 .. 10 ** -3.3, the same for the worst of the three,
    and the per-point score that one clean point in a thousand passes."""
    series, _ = datasets.clean_batch(rng, size)
    stats, points = [], []
    with torch.no_grad():
        for i in range(0, size, 1000):
            values, offsets = datasets.pack(series[i:i + 1000])
            _, scores, mask, s = model.evidence(torch.from_numpy(values), torch.from_numpy(offsets))
            stats.append(s.numpy().astype(np.float64))
            points.append(scores.numpy()[mask.numpy() > 0])
    stats = np.concatenate(stats)
    levels = 1.0 - 10.0 ** (-TAIL_STEP * np.arange(TAIL_KNOTS))

    def table(column: np.ndarray) -> tuple[np.ndarray, float]:
        knots = np.maximum.accumulate(np.quantile(column, levels)) + 1e-6 * np.arange(TAIL_KNOTS)
        decade = int(round(1 / TAIL_STEP))
        return knots, 1.0 / max(knots[-1] - knots[-1 - decade], 1e-6)  # the last decade's fall, kept

    tables = [table(stats[:, c]) for c in range(3)]
    knots = torch.tensor(np.stack([k for k, _ in tables]), dtype=torch.float32)
    slope = torch.tensor([s for _, s in tables], dtype=torch.float32)
    with torch.no_grad():
        each = -tail_log10(torch.tensor(stats, dtype=torch.float32), knots, slope)
    worst_knots, worst_slope = table(each.max(dim=-1).values.numpy().astype(np.float64))
    model.tail_knots.copy_(torch.cat([knots, torch.tensor(worst_knots, dtype=torch.float32)[None]]))
    model.tail_slope.copy_(torch.cat([slope, torch.tensor([worst_slope], dtype=torch.float32)]))
    model.point_threshold.fill_(float(np.quantile(np.concatenate(points), 0.999)))
    return {"clean_series": size, "false_positive_rate": model.false_positive_rate,
            "point_threshold": float(model.point_threshold)}


def recalibrate_vae(checkpoint: Path, seed: int) -> tuple[TimeSeriesVAE, dict]:
    """A trained VAE's network, kept, with the detector's tables made anew."""
    model, saved = _extend(checkpoint, TimeSeriesVAE, ("tail_knots", "tail_slope", "point_threshold"),
                           retired=("threshold",))
    model.eval()
    calibration = calibrate_detector(model, np.random.default_rng(seed + 1))
    return model, {**saved.get("training", {}), "calibration": calibration}


def train_vae(steps: int, batch: int, seed: int, lr: float = 1e-3) -> tuple[TimeSeriesVAE, dict]:
    rng = _seed(seed)
    model = TimeSeriesVAE()

    def batch_loss(_step):
        series, _ = datasets.clean_batch(rng, batch)
        values, offsets = datasets.pack(series)
        return model.elbo_loss(torch.from_numpy(values), torch.from_numpy(offsets))

    seconds = _fit("vae", model, steps, lr, batch_loss)
    calibration = calibrate_detector(model, np.random.default_rng(seed + 1))
    return model, {"steps": steps, "batch": batch, "seed": seed, "seconds": seconds, "calibration": calibration}


def save(model: torch.nn.Module, training: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_class": f"scripts.tsmodels:{type(model).__name__}", "config": model.config(),
                "state_dict": model.state_dict(), "training": training}, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("vae", "transformer", "all", "quantiles", "vae-calibration"),
                        default="all", help="quantiles: a quantile head for the Transformer checkpoint in --out "
                        "(its network kept); vae-calibration: the VAE checkpoint's detector tables made anew")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 3000 vae, 4000 transformer)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model in ("vae", "all"):
        model, info = train_vae(args.steps or 3000, args.batch, args.seed)
        save(model, info, args.out / "vae_timeseries.pt")
    if args.model == "vae-calibration":
        model, info = recalibrate_vae(args.out / "vae_timeseries.pt", args.seed)
        save(model, info, args.out / "vae_timeseries.pt")
    if args.model in ("transformer", "all"):
        model, info = train_transformer(args.steps or 4000, args.batch, args.seed)
        save(model, info, args.out / "transformer_timeseries.pt")
    if args.model in ("quantiles", "all"):
        model, info = train_quantiles(args.out / "transformer_timeseries.pt", args.steps or 2500, args.batch, args.seed)
        save(model, info, args.out / "transformer_timeseries.pt")


if __name__ == "__main__":
    main()

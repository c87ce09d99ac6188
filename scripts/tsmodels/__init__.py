"""The two Satlas models as plain PyTorch modules.

Both take a *ragged batch*: every series of the batch concatenated into one 1-D ``values``
tensor, and ``offsets``, the running total of series lengths (``[3, 7]`` = a series of 3 points
then one of 4). That is Triton's ragged-batch layout (``allow_ragged_batch`` plus a
``BATCH_ACCUMULATED_ELEMENT_COUNT`` batch input), so series of different lengths share one
dynamic batch with no client-side padding. Inside, each series is cut to its most recent
``window`` points, right-aligned, padded and masked, and normalised by its own mean and
standard deviation; outputs are returned in the series' own units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

MIN_LENGTH = 8
MAX_LENGTH = 4096


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton data type without the TYPE_ prefix: FP32, BOOL, ...
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable


@dataclass(frozen=True)
class TritonSignature:
    """What the converter needs to write a Triton config for a ragged-batch model."""

    inputs: tuple[TensorSpec, ...]  # sent by clients
    outputs: tuple[TensorSpec, ...]
    ragged_input: str  # the input whose requests are concatenated into one 1-D tensor
    batch_input: str  # a model input Triton fills with accumulated element counts, shape [B]


def ragged_window(values: torch.Tensor, offsets: torch.Tensor, window: int):
    """Ragged batch -> right-aligned ``[B, window]`` values and mask (1 = real point)."""
    ends = offsets.to(torch.int64)
    starts = torch.cat([torch.zeros_like(ends[:1]), ends[:-1]])
    pos = torch.arange(window, dtype=torch.int64)
    idx = ends.unsqueeze(1) - window + pos.unsqueeze(0)
    mask = (idx >= starts.unsqueeze(1)).to(values.dtype)
    x = values[idx.clamp(min=0)] * mask
    return x, mask


def masked_stats(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6):
    """Per-row mean and standard deviation over the real points."""
    n = mask.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(-1, keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / n
    # A constant series has no spread: fall back to a scale tied to its level.
    std = torch.sqrt(var).clamp(min=eps) + 1e-3 * (mean.abs() + 1.0) * (var < 1e-12).to(x.dtype)
    return mean, std


def masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of each row over the real points (padding sorted past the end)."""
    big = torch.full_like(x, 3.0e38)
    ordered, _ = torch.sort(torch.where(mask > 0, x, big), dim=-1)
    n = mask.sum(-1, keepdim=True).to(torch.int64).clamp(min=1)
    return torch.gather(ordered, 1, (n - 1) // 2)


TAIL_STEP = 0.1  # knots every tenth of a decade of tail probability
TAIL_KNOTS = 34  # 1 down to 10 ** -3.3: the calibration sample holds ten series past the last


def tail_log10(stats: torch.Tensor, knots: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """log10 of the share of clean series whose statistic reaches ``stats`` ([B, C]).

    ``knots[c, k]`` is the statistic at tail probability ``10 ** -(k * TAIL_STEP)`` on clean
    series; between knots the log-probability is linear, past the last one it falls on with
    ``slope`` per unit (an exponential tail). Written with clamps alone so it exports to ONNX.
    """
    widths = (knots[:, 1:] - knots[:, :-1]).clamp(min=1e-6)
    covered = (stats.unsqueeze(-1) - knots[:, :-1]).clamp(min=0.0)
    covered = torch.minimum(covered, widths)
    below = -(covered / widths).sum(-1) * TAIL_STEP
    beyond = (stats - knots[:, -1]).clamp(min=0.0) * slope
    return (below - beyond).clamp(max=0.0)


class TimeSeriesVAE(nn.Module):
    """Variational autoencoder over the most recent ``window`` points, and a calibrated detector.

    Three statistics say how unusual a series is: the largest reconstruction residual (what the
    VAE learned a normal series to be), the largest spike (a point that leaves both neighbours
    the same way, whatever the shape around it) and how far the largest jump stands
    out from the series' other jumps (a level shift). Each is a robust ratio, so it means the
    same for a series in any units. Each becomes a tail probability on clean series, and the
    smallest of the three is calibrated once more on the same clean series: ``anomaly_score`` is
    -log10 of the share of clean series that look at least this unusual, comparable across
    series and models. The flag fires past ``-log10(false_positive_rate)``. The per-point scores
    are the larger of each point's residual and spike ratios.
    """

    # Floors on the robust scales, in units of the series' standard deviation: a nearly noiseless
    # series would otherwise make any wiggle look enormous.
    RESIDUAL_FLOOR = 0.5
    STEP_FLOOR = 0.2

    def __init__(
        self,
        window: int = 128,
        latent: int = 48,
        hidden: int = 512,
        false_positive_rate: float = 0.01,
        **_retired,  # "threshold", "score_floor": checkpoints from before the calibrated score
    ):
        super().__init__()
        self.window, self.latent, self.hidden = window, latent, hidden
        self.false_positive_rate = false_positive_rate
        self.encoder = nn.Sequential(
            nn.Linear(2 * window, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.to_mu = nn.Linear(hidden, latent)
        self.to_logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, window),
        )
        # Filled by scripts.train's calibration: the statistics' knots (three, then their combination).
        self.register_buffer("tail_knots", torch.arange(TAIL_KNOTS, dtype=torch.float32).repeat(4, 1))
        self.register_buffer("tail_slope", torch.ones(4))
        self.register_buffer("point_threshold", torch.tensor(6.0))

    @property
    def threshold(self) -> float:
        return -math.log10(self.false_positive_rate)

    def config(self) -> dict:
        return {"window": self.window, "latent": self.latent, "hidden": self.hidden,
                "false_positive_rate": self.false_positive_rate}

    def normalise(self, values, offsets):
        x, mask = ragged_window(values, offsets, self.window)
        mean, std = masked_stats(x, mask)
        return (x - mean) / std * mask, mask, mean, std

    def encode(self, z, mask):
        h = self.encoder(torch.cat([z, mask], dim=-1))
        return self.to_mu(h), self.to_logvar(h).clamp(-10.0, 10.0)

    def elbo_loss(self, values, offsets, beta: float = 0.05):
        """Training loss: masked reconstruction error plus a weighted KL term."""
        z, mask, _, _ = self.normalise(values, offsets)
        mu, logvar = self.encode(z, mask)
        sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = self.decoder(sample)
        err = (((rec - z) * mask) ** 2).sum(-1) / mask.sum(-1)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1) / self.window
        return (err + beta * kl).mean()

    def evidence(self, values, offsets):
        """Reconstruction, per-point scores, mask and the three series statistics [B, 3]."""
        z, mask, mean, std = self.normalise(values, offsets)
        mu, _ = self.encode(z, mask)
        rec = self.decoder(mu)
        resid = (z - rec).abs() * mask
        resid = resid / (masked_median(resid, mask) * 1.4826).clamp(min=self.RESIDUAL_FLOOR)
        # A spike leaves both neighbours the same way: the smaller of its two steps, against the
        # series' typical step. A step of a staircase leaves one neighbour only and scores nothing.
        pairs = mask[:, 1:] * mask[:, :-1]
        steps = (z[:, 1:] - z[:, :-1]) * pairs
        typical = (masked_median(steps.abs(), pairs) * 1.4826).clamp(min=self.STEP_FLOOR)
        before, after = steps[:, :-1], -steps[:, 1:]
        spike = torch.minimum(before.abs(), after.abs()) * (before * after > 0) / typical
        zero = torch.zeros_like(mask[:, :1])
        spike = torch.cat([zero, spike, zero], dim=-1)
        # The largest jump against the largest one that is not next to it.
        pairs = mask[:, 1:] * mask[:, :-1]
        jumps = steps.abs()
        top, where = jumps.max(dim=-1, keepdim=True)
        near = (torch.arange(jumps.shape[1]).unsqueeze(0) - where).abs() <= 1
        runner_up = jumps.masked_fill(near, 0.0).max(dim=-1, keepdim=True).values
        stats = torch.cat([resid.max(dim=-1, keepdim=True).values, spike.max(dim=-1, keepdim=True).values,
                           top / runner_up.clamp(min=0.02)], dim=-1)
        return rec * std + mean, torch.maximum(resid, spike) * mask, mask, stats

    def surprise(self, stats):
        """-log10 tail probability of each series' statistics, combined and calibrated."""
        each = -tail_log10(stats, self.tail_knots[:3], self.tail_slope[:3])
        worst = each.max(dim=-1, keepdim=True).values
        return -tail_log10(worst, self.tail_knots[3:], self.tail_slope[3:])

    def forward(self, values, offsets):
        rec, scores, mask, stats = self.evidence(values, offsets)
        score = self.surprise(stats)
        return rec * mask, scores, score, score > self.threshold

    def triton_signature(self) -> TritonSignature:
        w = self.window
        return TritonSignature(
            inputs=(TensorSpec("values", "FP32", (-1,)),),
            outputs=(
                TensorSpec("reconstruction", "FP32", (w,)),
                TensorSpec("anomaly_scores", "FP32", (w,)),
                TensorSpec("anomaly_score", "FP32", (1,)),
                TensorSpec("anomaly_flag", "BOOL", (1,)),
            ),
            ragged_input="values",
            batch_input="offsets",
        )

    def serving_metadata(self) -> dict[str, str]:
        return {
            "task": "reconstruction",
            "description": "VAE: reconstruction, per-point anomaly scores, calibrated series score and flag",
            "window": str(self.window),
            "min_length": str(MIN_LENGTH),
            "max_length": str(MAX_LENGTH),
            # the series score is -log10 of a tail probability on clean series; the flag's threshold
            # is the false-positive rate it was set for
            "anomaly_threshold": f"{self.threshold:.6g}",
            "anomaly_false_positive_rate": f"{self.false_positive_rate:g}",
            "point_anomaly_threshold": f"{float(self.point_threshold):.6g}",
            "output.predictions": "reconstruction",
            "output.anomaly_scores": "anomaly_scores",
            "output.anomaly_score": "anomaly_score",
            "output.anomaly_flag": "anomaly_flag",
        }


class _Block(nn.Module):
    """Pre-norm transformer encoder block written out so it exports to plain ONNX ops."""

    def __init__(self, d_model: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(d_model // heads)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, h, key_bias):
        b, t, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        q, k, v = (x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for x in (q, k, v))
        att = (q @ k.transpose(-1, -2)) * self.scale + key_bias
        out = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        h = h + self.proj(out)
        return h + self.ff(self.norm2(h))


class TimeSeriesTransformer(nn.Module):
    """Patch transformer forecasting the next ``horizon`` points.

    The window is cut into patches of ``patch`` points aligned on the most recent point; each
    patch is one token. The head predicts the change from the last observed value, so a
    series with no learnable structure (a random walk) gets a forecast near the naive one.
    """

    # Steps over which the quantile head sees how the series wanders (in units of its mean step).
    SPANS = (2, 4, 8, 16, 32)

    def __init__(self, window: int = 256, patch: int = 8, horizon: int = 16, d_model: int = 64,
                 heads: int = 4, layers: int = 2, ff: int = 128, quantile_levels: tuple = ()):
        super().__init__()
        assert window % patch == 0
        self.window, self.patch, self.horizon = window, patch, horizon
        self.d_model, self.heads, self.layers, self.ff = d_model, heads, layers, ff
        tokens = window // patch
        self.embed = nn.Linear(3 * patch, d_model)
        self.position = nn.Parameter(torch.randn(tokens, d_model) * 0.02)
        self.blocks = nn.ModuleList(_Block(d_model, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(tokens * d_model, horizon)
        # Optional: (low, 0.5, high) quantiles around the point forecast, which is their median. The
        # head gives how far below and above, in each series' mean absolute step, as softplus: the
        # levels never cross. band_scale is set by conformal calibration after training.
        self.quantile_levels = tuple(quantile_levels)
        if self.quantile_levels:
            assert len(self.quantile_levels) == 3 and self.quantile_levels[1] == 0.5
            self.quantile_head = nn.Sequential(nn.Linear(tokens * d_model + len(self.SPANS) + 1, 64), nn.GELU(),
                                               nn.Linear(64, 2 * horizon))
            self.register_buffer("band_scale", torch.ones(1))

    def config(self) -> dict:
        return {"window": self.window, "patch": self.patch, "horizon": self.horizon,
                "d_model": self.d_model, "heads": self.heads, "layers": self.layers, "ff": self.ff,
                **({"quantile_levels": self.quantile_levels} if self.quantile_levels else {})}

    def forecast_normalised(self, values, offsets):
        y, mean, std, z, mask, _ = self._forecast(values, offsets)
        return y, mean, std, z, mask

    def _forecast(self, values, offsets):
        x, mask = ragged_window(values, offsets, self.window)
        mean, std = masked_stats(x, mask)
        z = (x - mean) / std * mask
        b = z.shape[0]
        tokens = self.window // self.patch
        # Steps (first differences) as a second channel: how rough the path is tells a random
        # walk from a noisy trend.
        both = mask * torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], dim=-1)
        dz = (z - torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=-1)) * both
        zp, dp, mp = (t.reshape(b, tokens, self.patch) for t in (z, dz, mask))
        h = self.embed(torch.cat([zp, dp, mp], dim=-1)) + self.position
        # Patches with no real point are hidden from attention.
        key_bias = ((mp.sum(-1) == 0).to(z.dtype) * -1e9).reshape(b, 1, 1, tokens)
        for block in self.blocks:
            h = block(h, key_bias)
        features = self.norm(h).reshape(b, -1)
        delta = self.head(features)
        return z[:, -1:] + delta, mean, std, z, mask, features

    @staticmethod
    def mean_step(z, mask):
        both = mask[:, 1:] * mask[:, :-1]
        return ((z[:, 1:] - z[:, :-1]).abs() * both).sum(-1, keepdim=True) / both.sum(-1, keepdim=True).clamp(min=1)

    def band(self, features, z, mask):
        """(below, above) the median, in normalised units, for each future point."""
        step = self.mean_step(z, mask).clamp(min=1e-2)
        spans = []
        for k in self.SPANS:  # how far the series goes in k steps, against k single steps
            both = mask[:, k:] * mask[:, :-k]
            dk = ((z[:, k:] - z[:, :-k]).abs() * both).sum(-1, keepdim=True) / both.sum(-1, keepdim=True).clamp(min=1)
            spans.append(dk)
        wander = torch.log(torch.cat(spans, -1).clamp(min=1e-3) / step)
        out = self.quantile_head(torch.cat([features, wander, torch.log(mask.sum(-1, keepdim=True))], -1))
        width = nn.functional.softplus(out) * step * self.band_scale
        return width[:, : self.horizon], width[:, self.horizon:]

    def forward(self, values, offsets):
        y, mean, std, z, mask, features = self._forecast(values, offsets)
        forecast = y * std + mean
        if not self.quantile_levels:
            return (forecast,)
        below, above = self.band(features, z, mask)
        quantiles = torch.stack([(y - below) * std + mean, forecast, (y + above) * std + mean], dim=1)
        return forecast, quantiles

    def quantile_loss(self, values, offsets, future):
        """Pinball loss of the low and high quantiles, in units of each series' mean step (the point
        forecast, the median, is trained by ``loss``)."""
        with torch.no_grad():
            y, mean, std, z, mask, features = self._forecast(values, offsets)
        below, above = self.band(features, z, mask)
        target = (future - mean) / std
        step = self.mean_step(z, mask).clamp(min=1e-2)
        low, high = self.quantile_levels[0], self.quantile_levels[2]
        d_low, d_high = target - (y - below), target - (y + above)
        pinball = torch.maximum(low * d_low, (low - 1) * d_low) + torch.maximum(high * d_high, (high - 1) * d_high)
        return (pinball / step).mean()

    def loss(self, values, offsets, future):
        """Absolute error in units of each series' mean absolute step (MASE scaling).

        That is the scale the quality check uses; it weighs a smooth series' error as much as a
        noisy one's, so the model can't buy trend-following on random walks with the rest.
        """
        y, mean, std, z, mask = self.forecast_normalised(values, offsets)
        both = mask[:, 1:] * mask[:, :-1]
        step = ((z[:, 1:] - z[:, :-1]).abs() * both).sum(-1, keepdim=True) / both.sum(-1, keepdim=True).clamp(min=1)
        return ((y - (future - mean) / std).abs() / step.clamp(min=1e-2)).mean()

    def triton_signature(self) -> TritonSignature:
        outputs = (TensorSpec("forecast", "FP32", (self.horizon,)),)
        if self.quantile_levels:
            outputs += (TensorSpec("quantiles", "FP32", (len(self.quantile_levels), self.horizon)),)
        return TritonSignature(
            inputs=(TensorSpec("values", "FP32", (-1,)),),
            outputs=outputs,
            ragged_input="values",
            batch_input="offsets",
        )

    def serving_metadata(self) -> dict[str, str]:
        return {
            "task": "forecast",
            "description": f"Patch transformer: forecast of the next {self.horizon} points",
            "window": str(self.window),
            "horizon": str(self.horizon),
            "min_length": str(MIN_LENGTH),
            "max_length": str(MAX_LENGTH),
            "output.predictions": "forecast",
            **({"output.quantiles": "quantiles", "quantile_levels": ",".join(f"{q:g}" for q in self.quantile_levels)}
               if self.quantile_levels else {}),
        }


MODEL_CLASSES = {"TimeSeriesVAE": TimeSeriesVAE, "TimeSeriesTransformer": TimeSeriesTransformer}

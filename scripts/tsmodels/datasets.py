"""Batches of synthetic series for training and evaluation (numpy only here, though importing it
loads the scripts.tsmodels package, and torch with it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools import patterns


def pack(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Series -> the models' ragged layout: concatenated values and accumulated lengths."""
    values = np.concatenate([np.asarray(s, dtype=np.float32) for s in series])
    offsets = np.cumsum([len(s) for s in series]).astype(np.float32)
    return values, offsets


def forecast_batch(rng: np.random.Generator, size: int, horizon: int, max_length: int = 4096,
                   weights: dict[str, float] | None = None):
    """Clean series with their next ``horizon`` points."""
    items = [patterns.random_series(rng, horizon=horizon, length=patterns.random_length(rng, 8, max_length),
                                    weights=weights) for _ in range(size)]
    values, offsets = pack([s.values for s in items])
    future = np.stack([s.future for s in items]).astype(np.float32)
    return values, offsets, future, [s.pattern for s in items]


def clean_batch(rng: np.random.Generator, size: int, max_length: int = 4096):
    items = [patterns.random_series(rng, length=patterns.random_length(rng, 8, max_length))
             for _ in range(size)]
    return [s.values for s in items], [s.pattern for s in items]


@dataclass(frozen=True)
class AnomalySet:
    series: list[np.ndarray]
    labels: np.ndarray  # 1 = has an injected anomaly
    kinds: list[str]  # "clean", "spike" or "level_shift"
    positions: np.ndarray  # index of the anomaly, -1 for clean series
    patterns: list[str]


def anomaly_set(rng: np.random.Generator, size: int, window: int, min_length: int = 16,
                max_length: int = 512, shapes: tuple[str, ...] = patterns.PATTERNS) -> AnomalySet:
    """Half clean series, a quarter with a spike, a quarter with a level shift, the shapes in turn."""
    series, labels, kinds, positions, pats = [], [], [], [], []
    for i in range(size):
        s = patterns.generate(shapes[(i // 4) % len(shapes)], patterns.random_length(rng, min_length, max_length), rng)
        kind = "clean" if i % 2 == 0 else patterns.ANOMALY_KINDS[(i // 2) % 2]
        values, pos = s.values, -1
        if kind != "clean":
            values, pos = patterns.inject_anomaly(s.values, rng, kind, window=window)
        series.append(values)
        labels.append(int(kind != "clean"))
        kinds.append(kind)
        positions.append(pos)
        pats.append(s.pattern)
    return AnomalySet(series, np.array(labels), kinds, np.array(positions), pats)

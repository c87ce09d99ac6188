"""The PyTorch modules' own logic: ragged batching, per-series normalisation, windowing."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scripts.tsmodels import (  # noqa: E402
    TimeSeriesTransformer,
    TimeSeriesVAE,
    datasets,  # noqa: E402
    masked_median,
    ragged_window,
    tail_log10,
)
from tools import patterns  # noqa: E402


def test_ragged_window_right_aligns_pads_and_cuts():
    values, offsets = datasets.pack([np.array([1.0, 2.0, 3.0]), np.arange(10, 20, dtype=float)])
    x, mask = ragged_window(torch.from_numpy(values), torch.from_numpy(offsets), 5)
    np.testing.assert_array_equal(x.numpy(), [[0, 0, 1, 2, 3], [15, 16, 17, 18, 19]])
    np.testing.assert_array_equal(mask.numpy(), [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])


def test_masked_median_ignores_padding():
    x = torch.tensor([[0.0, 0.0, 5.0, 1.0, 3.0], [4.0, 1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(masked_median(x, mask).numpy()[:, 0], [3.0, 3.0])


def _series(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [patterns.random_series(rng, length=int(rng.integers(8, 600))).values for _ in range(n)]


@pytest.mark.parametrize("cls", [TimeSeriesVAE, TimeSeriesTransformer])
def test_a_series_gets_the_same_answer_alone_or_in_a_batch(cls):
    torch.manual_seed(0)
    model = cls().eval()
    series = _series()
    values, offsets = datasets.pack(series)
    with torch.no_grad():
        batched = model(torch.from_numpy(values), torch.from_numpy(offsets))
        for i, s in enumerate(series):
            v, o = datasets.pack([s])
            alone = model(torch.from_numpy(v), torch.from_numpy(o))
            for b, a in zip(batched, alone):
                np.testing.assert_allclose(b[i].float().numpy(), a[0].float().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [TimeSeriesVAE, TimeSeriesTransformer])
def test_outputs_follow_the_series_units(cls):
    # Normalisation is inside the model: a*x + b in, a*y + b out (and scores unchanged).
    torch.manual_seed(0)
    model = cls().eval()
    series = _series(3, seed=4)
    a, b = 250.0, -1.0e4
    with torch.no_grad():
        base = model(*map(torch.from_numpy, datasets.pack(series)))
        moved = model(*map(torch.from_numpy, datasets.pack([a * s + b for s in series])))
    first, moved_first = base[0].numpy(), moved[0].numpy()
    if cls is TimeSeriesVAE:  # reconstruction is zero on padding; compare the real points
        _, mask = ragged_window(*map(torch.from_numpy, datasets.pack(series)), model.window)
        first, moved_first = first * mask.numpy(), moved_first * mask.numpy()
        expected = (a * base[0].numpy() + b) * mask.numpy()
        np.testing.assert_allclose(moved[1].numpy(), base[1].numpy(), rtol=1e-2, atol=1e-2)
    else:
        expected = a * first + b
    np.testing.assert_allclose(moved_first, expected, rtol=1e-3, atol=1e-3 * abs(b))


def test_only_the_most_recent_window_counts():
    torch.manual_seed(0)
    model = TimeSeriesTransformer().eval()
    tail = patterns.generate("seasonal", model.window, np.random.default_rng(2)).values
    with torch.no_grad():
        short = model(*map(torch.from_numpy, datasets.pack([tail])))[0]
        long = model(*map(torch.from_numpy, datasets.pack([np.concatenate([np.full(3000, 1e6), tail])])))[0]
    np.testing.assert_allclose(short.numpy(), long.numpy(), rtol=1e-5)


def test_constant_series_do_not_blow_up():
    torch.manual_seed(0)
    for model in (TimeSeriesVAE().eval(), TimeSeriesTransformer().eval()):
        with torch.no_grad():
            outs = model(*map(torch.from_numpy, datasets.pack([np.full(40, 7.5), np.zeros(8)])))
        for out in outs:
            assert torch.isfinite(out.float()).all()


def test_tail_tables_read_a_tenth_of_a_decade_per_knot_and_fall_on_past_the_last():
    knots = torch.tensor([[0.0, 1.0, 3.0], [0.0, 2.0, 4.0]])
    slope = torch.tensor([0.5, 2.0])
    stats = torch.tensor([[-1.0, 0.0], [1.0, 3.0], [2.0, 6.0]])  # rows: series; columns: statistics
    got = tail_log10(stats, knots, slope)
    # below the first knot: probability 1; at knot k: 10 ** (-k / 10); between: linear in log
    np.testing.assert_allclose(got.numpy(), [[0.0, 0.0], [-0.1, -0.15], [-0.15, -0.2 - 2.0 * 2.0]], atol=1e-6)


def test_a_spike_scores_as_a_spike_and_a_staircase_step_does_not():
    model = TimeSeriesVAE().eval()
    t = np.arange(100, dtype=float)
    rng = np.random.default_rng(0)
    stairs = np.floor(t / 10) + rng.normal(0, 0.02, 100)
    spiked = stairs.copy()
    spiked[60] += 5.0
    with torch.no_grad():
        _, scores, _, stats = model.evidence(*map(torch.from_numpy, datasets.pack([stairs, spiked])))
    assert float(stats[0, 1]) < 2.0 < 6.0 < float(stats[1, 1])  # the spike statistic: steps leave one neighbour
    assert int(scores[1].argmax()) == model.window - 100 + 60  # right-aligned: the spike's own point


def test_the_calibrated_score_is_the_same_for_a_series_in_any_units():
    model = TimeSeriesVAE().eval()
    series = _series(4, seed=9)
    with torch.no_grad():
        base = model(*map(torch.from_numpy, datasets.pack(series)))[2]
        moved = model(*map(torch.from_numpy, datasets.pack([250.0 * s - 1.0e4 for s in series])))[2]
    np.testing.assert_allclose(moved.numpy(), base.numpy(), rtol=1e-2, atol=1e-2)

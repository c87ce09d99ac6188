import numpy as np
import pytest

from tools import patterns


@pytest.mark.parametrize("pattern", patterns.ALL_SHAPES)
def test_each_pattern_is_finite_and_deterministic(pattern):
    a = patterns.generate(pattern, 300, np.random.default_rng(7), horizon=16)
    b = patterns.generate(pattern, 300, np.random.default_rng(7), horizon=16)
    assert a.values.shape == (300,) and a.future.shape == (16,)
    assert np.isfinite(a.values).all() and np.isfinite(a.future).all()
    np.testing.assert_array_equal(a.values, b.values)


def test_long_exponential_series_stay_finite():
    s = patterns.generate("exponential", 4096, np.random.default_rng(1), horizon=16)
    assert np.isfinite(s.values).all()
    assert abs(s.values[-1] - s.values[0]) > 0


def test_the_history_is_followed_by_its_own_future():
    # The future continues the same draw: it is not a second, unrelated series.
    s = patterns.generate("linear", 200, np.random.default_rng(3), horizon=16, scale=1.0, offset=0.0)
    slope = np.polyfit(np.arange(200), s.values, 1)[0]
    expected = s.values[-1] + slope * np.arange(1, 17)
    assert np.abs(s.future - expected).mean() < 0.2 * np.abs(s.values).max()


def test_unknown_pattern_is_rejected():
    with pytest.raises(ValueError, match="unknown pattern"):
        patterns.generate("sawtooth", 10, np.random.default_rng(0))


@pytest.mark.parametrize("kind", patterns.ANOMALY_KINDS)
def test_anomaly_lands_inside_the_window(kind):
    rng = np.random.default_rng(11)
    for _ in range(50):
        values = patterns.random_series(rng, length=500).values
        changed, pos = patterns.inject_anomaly(values, rng, kind, window=128)
        assert 500 - 128 <= pos < 500
        diff = np.flatnonzero(changed != values)
        assert diff[0] == pos
        if kind == "spike":
            assert len(diff) == 1
        else:
            assert diff[-1] == 499


def test_random_lengths_cover_the_range():
    rng = np.random.default_rng(0)
    lengths = [patterns.random_length(rng, 8, 4096) for _ in range(2000)]
    assert min(lengths) >= 8 and max(lengths) <= 4096
    assert min(lengths) < 12 and max(lengths) > 2000


def test_training_never_sees_the_held_out_shapes():
    rng = np.random.default_rng(5)
    drawn = {patterns.random_series(rng, length=16).pattern for _ in range(500)}
    assert drawn == set(patterns.PATTERNS) and not drawn & set(patterns.HELD_OUT_SHAPES)


def test_a_short_staircase_still_has_three_levels():
    # One step would be a clean level shift, the very anomaly the held-out set tells apart from clean.
    rng = np.random.default_rng(11)
    steps = []
    for _ in range(300):
        jumps = np.abs(np.diff(patterns.generate("level_steps", 16, rng).values))
        steps.append(int(np.sum(jumps > 4 * np.median(jumps))))
    assert np.mean(np.array(steps) >= 2) >= 0.95, np.bincount(steps)

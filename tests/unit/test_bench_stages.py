"""The mesh benchmark's latency by stage, from the timestamps a job's event carries."""

import time

import pytest

from tools.bench import measure
from tools.bench.mesh import Step, stages_table


def test_each_stage_is_the_gap_between_two_timestamps_of_the_same_job():
    # sent at perf 10.0 (wall 1000.0); created +5 ms, queued +25, started +35, ended +40, event +42
    job_sent = {"a": 10.0, "b": 20.0, "lost": 30.0}
    stamps = {
        "a": (1000.042, 1000.005, 1000.025, 1000.035, 1000.040, 0.004),
        "b": (1010.084, 1010.010, 1010.050, 1010.070, 1010.080, 0.008),
        "other": (0, 0, 0, 0, 0, 0),  # another producer's job: not this run's
    }
    stages = measure.stage_latencies(job_sent, stamps, wall_offset=990.0)
    assert list(stages) == list(measure.STAGES)
    assert stages["ingest"]["p50"] == pytest.approx(7.5)  # 5 and 10 ms
    assert stages["dispatch"]["p50"] == pytest.approx(30.0)  # 20 and 40
    assert stages["broker"]["p95"] == pytest.approx(19.5)  # 10 and 20
    assert stages["run"]["p50"] == pytest.approx(7.5)  # 5 and 10
    assert stages["triton"]["p50"] == pytest.approx(6.0)  # 4 and 8
    assert stages["event"]["p50"] == pytest.approx(3.0)  # 2 and 4
    assert measure.stage_latencies(job_sent, {}, 990.0) == {}


def test_a_job_started_before_its_queued_mark_counts_in_neither_stage_around_it():
    # "c" was started by a worker before the QUEUED mark committed: its event has no queue time.
    job_sent = {"a": 10.0, "b": 20.0, "c": 25.0}
    stamps = {
        "a": (1000.042, 1000.005, 1000.025, 1000.035, 1000.040, 0.004),
        "b": (1010.084, 1010.010, 1010.050, 1010.070, 1010.080, 0.008),
        "c": (1015.050, 1015.005, 0.0, 1015.030, 1015.045, 0.006),
    }
    stages = measure.stage_latencies(job_sent, stamps, wall_offset=990.0)
    assert stages["dispatch"]["p50"] == pytest.approx(30.0)  # a and b only
    assert stages["broker"]["p95"] == pytest.approx(19.5)
    assert stages["run"]["p50"] == pytest.approx(10.0)  # 5, 10 and 15: c still counts where it can
    only_c = measure.stage_latencies({"c": 25.0}, stamps, wall_offset=990.0)
    assert only_c["broker"]["p50"] != only_c["broker"]["p50"]  # NaN: no job to say


def test_the_summary_takes_the_median_of_the_runs_and_the_table_names_each_stage():
    def run(p50: float) -> measure.Run:
        return measure.Run(100, 10, 1000, 1000, 0, 0, 0, 100.0, 1, 2, 3, 4,
                           stages_ms={name: {"p50": p50, "p95": 2 * p50} for name in measure.STAGES})

    step = Step(100, 10, [run(1.0), run(5.0), run(3.0)])
    assert step.summary()["stages_ms"]["broker"] == {"p50": 3.0, "p95": 6.0}
    text = stages_table([step])
    assert all(name in text for name in measure.STAGES) and "3.0/6.0" in text
    assert stages_table([Step(100, 10, [measure.Run(100, 10, 0, 0, 0, 0, 0, 0.0, 0, 0, 0, 0)])]) == ""


def test_the_tally_counts_each_accepted_job_once_as_it_ends():
    accepted, done = ["a", "b"], {}
    tally = measure.Tally(accepted, done)
    assert tally.update() == (0, 0)
    done["a"] = (1.0, measure.js.JOB_STATE_SUCCEEDED)
    done["z"] = (1.0, measure.js.JOB_STATE_FAILED)  # not accepted by this run: not counted
    accepted.append("c")
    assert tally.update() == (1, 0)
    done["c"] = (2.0, measure.js.JOB_STATE_FAILED)
    assert tally.update() == (2, 1)
    assert tally.update() == (2, 1)  # an ended job is not counted again
    assert tally.pending == ["b"]


def test_the_batched_producer_sends_what_is_due_at_most_once_per_gap_and_nothing_twice():
    from tools.bench.measure import gathered

    sent, calls, t0 = [], [], time.perf_counter()
    for due, request in gathered([[1.0] * 4] * 3, per_s=400, total=100, gap_s=0.05, most=16):
        if request is None:
            time.sleep(due)
            continue
        calls.append(time.perf_counter() - t0)
        assert len(request.requests) == len(due) <= 16
        sent.extend(due)
    assert sent == list(range(100))  # every series once, in order
    assert calls[0] < 0.02  # the first at once
    assert all(b - a >= 0.049 for a, b in zip(calls, calls[1:]))  # no sooner than the gap
    assert 100 / 16 <= len(calls) <= 10  # 0.25 s of series: about one call per gap, at most 16 each


def test_a_run_with_no_figure_for_a_stage_does_not_sway_its_median():
    def run(broker: float) -> measure.Run:
        return measure.Run(100, 10, 1000, 1000, 0, 0, 0, 100.0, 1, 2, 3, 4,
                           stages_ms={name: {"p50": broker, "p95": broker} for name in measure.STAGES})

    for order in ([1.0, float("nan"), 5.0], [float("nan"), 1.0, 5.0], [5.0, 1.0, float("nan")]):
        assert Step(100, 10, [run(b) for b in order]).summary()["stages_ms"]["broker"]["p50"] == 3.0
    only = Step(100, 10, [run(float("nan"))]).summary()["stages_ms"]["broker"]["p50"]
    assert only != only  # NaN: no run had a figure

"""tools.inputs: series from values, files, stdin and patterns; state names as users type them."""

from __future__ import annotations

import argparse
import io

import pytest
from satlas.v1 import job_state_pb2

from tools import cli, display, inputs

S = job_state_pb2.JobState


# --- series input --------------------------------------------------------------------------


def test_parse_numbers_accepts_commas_lines_and_spaces():
    assert inputs.parse_numbers("1,2.5, -3\n4\n\n5e2 ,6") == [1.0, 2.5, -3.0, 4.0, 500.0, 6.0]
    assert inputs.parse_numbers("") == []
    with pytest.raises(ValueError, match="not a number: 'x'"):
        inputs.parse_numbers("1,x")


def _series_args(*argv):
    return cli.build_parser().parse_args(["submit", *argv])


def test_series_from_values_with_id_and_labels():
    series = inputs.build_series(_series_args("--values=-1,2,3", "--series-id", "s", "--label", "a=1"))
    assert list(series.values) == [-1.0, 2.0, 3.0]
    assert series.series_id == "s" and dict(series.labels) == {"a": "1"}


def test_series_from_file_and_stdin(tmp_path, monkeypatch):
    path = tmp_path / "s.txt"
    path.write_text("1\n2\n3.5\n")
    assert inputs.series_values(_series_args("--file", str(path))) == [1.0, 2.0, 3.5]
    monkeypatch.setattr("sys.stdin", io.StringIO("4,5,6\n"))
    assert inputs.series_values(_series_args("--file", "-")) == [4.0, 5.0, 6.0]


def test_series_from_pattern_is_seeded():
    a = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "7"))
    b = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "7"))
    c = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "8"))
    assert len(a) == 40 and a == b and a != c
    assert len(inputs.series_values(_series_args("--pattern", "random_walk"))) == 128  # default length


def test_empty_series_is_refused():
    with pytest.raises(ValueError, match="empty"):
        inputs.series_values(_series_args("--values", ","))


# --- states --------------------------------------------------------------------------------


def test_state_names_are_short():
    assert display.state_name(S.JOB_STATE_SUCCEEDED) == "SUCCEEDED"
    assert display.state_name(S.JOB_STATE_CANCELLED) == "CANCELLED"
    assert display.state_name(S.JOB_STATE_UNSPECIFIED) == "UNSPECIFIED"
    assert display.state_name(42) == "42"


@pytest.mark.parametrize("text", ["succeeded", "SUCCEEDED", "Succeeded", "job_state_succeeded", "JOB_STATE_SUCCEEDED"])
def test_parse_state_spellings(text):
    assert inputs.parse_state(text) == S.JOB_STATE_SUCCEEDED


def test_parse_state_covers_every_state_but_unspecified():
    assert {inputs.parse_state(s) for s in inputs.STATE_CHOICES} == set(S.values()) - {S.JOB_STATE_UNSPECIFIED}
    with pytest.raises(Exception, match="unknown state"):
        inputs.parse_state("unspecified")


def test_a_horizon_is_a_count_of_points():
    assert inputs.parse_horizon("0") == 0 and inputs.parse_horizon("12") == 12
    for bad in ("-1", "three", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            inputs.parse_horizon(bad)

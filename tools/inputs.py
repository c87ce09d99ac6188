"""What the project's clients read from their users: series (values, files, patterns), labels, models, states."""

from __future__ import annotations

import argparse
import sys

import numpy
from satlas.v1 import job_state_pb2, timeseries_pb2

from tools import patterns

STATE_CHOICES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")


def parse_state(text: str) -> int:
    """argparse type for --state: 'succeeded', 'SUCCEEDED' or 'JOB_STATE_SUCCEEDED'."""
    name = text.strip().upper().removeprefix("JOB_STATE_")
    if name.lower() not in STATE_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r}; expected one of {', '.join(STATE_CHOICES)}")
    return job_state_pb2.JobState.Value("JOB_STATE_" + name)


def parse_horizon(text: str) -> int:
    """argparse type for --horizon: a count of points, 0 for the model's whole horizon."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count of points (0 or more), got {text!r}")
    return n


def parse_numbers(text: str) -> list[float]:
    """Numbers separated by commas, whitespace or newlines (so both a CSV row and a column work)."""
    values = []
    for token in text.replace(",", " ").split():
        try:
            values.append(float(token))
        except ValueError:
            raise ValueError(f"not a number: {token!r}") from None
    return values


def read_text(path: str) -> str:
    """A file's text; '-': stdin's."""
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_numbers(path: str) -> list[float]:
    return parse_numbers(read_text(path))


def read_rows(path: str) -> list[tuple[int, list[float]]]:
    """(line number, series) for each non-empty line of a file ('-': stdin), numbers separated by
    commas or spaces."""
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append((n, parse_numbers(line)))
            except ValueError as exc:
                raise ValueError(f"line {n}: {exc}") from None
    if not rows:
        raise ValueError(f"no series in {path}")
    return rows


def pattern_values(pattern: str, length: int, seed: int | None) -> list[float]:
    return patterns.generate(pattern, length, numpy.random.default_rng(seed)).values.tolist()


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label must be KEY=VALUE, got {text!r}")
    return key, value


def series_values(args: argparse.Namespace) -> list[float]:
    if args.values is not None:
        values = parse_numbers(args.values)
    elif args.file is not None:
        values = read_numbers(args.file)
    else:
        values = pattern_values(args.pattern, args.length, args.seed)
    if not values:
        raise ValueError("the series is empty")
    return values


def build_series(args: argparse.Namespace) -> timeseries_pb2.TimeSeries:
    return timeseries_pb2.TimeSeries(
        values=series_values(args), series_id=args.series_id or "", labels=dict(args.label or [])
    )


def split_models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]

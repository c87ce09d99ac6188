"""The guided demo (python -m tools.demo): run as a subprocess against a real isolated stack,
and its pure parts on their own."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from satlas.v1 import job_pb2
from satlas.v1 import job_state_pb2 as js

from launcher.stack import Stack, StackSettings
from tools import demo, display

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, triton):
    # Its own services (the SQL checks count whole tables) on SQLite in the run directory: the demo
    # finds it the way `make up` chooses it (SATLAS_RUN_DIR). Triton is the session's.
    settings = StackSettings.isolated(tmp_path_factory.mktemp("demo"), triton_url=triton.settings.grpc_url)
    with Stack(settings) as s:
        yield s


def test_the_demo_walks_through_a_real_stack(stack):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SATLAS_RUN_DIR"] = str(stack.settings.run_dir)
    command = [sys.executable, "-m", "tools.demo", "--ingest", stack.ingest, "--orchestrator", stack.orchestrator,
               "--analysis", stack.analysis, "--dashboard-url", stack.dashboard_url, "--flower-url", stack.flower_url,
               "--pause", "0.1"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    headings = re.findall(r"^(\d)\. ", out, re.MULTILINE)
    assert headings == [str(i) for i in range(1, 9)], out
    assert out.count("SERVING") == 3 and "NOT SERVING" not in out
    # Every job seen live to its end: five patterns times two models.
    live = out.split("\n4. ")[1].split("\n5. ")[0]
    succeeded = re.findall(r"^\s+\+\s*[\d.]+ ms\s+(\w+)\s+(\w+)\s+SUCCEEDED\s+queue", live, re.MULTILINE)
    assert sorted(succeeded) == sorted((p, m) for p in demo.patterns.PATTERNS for m in demo.MODELS), live
    assert "10 of 10 jobs SUCCEEDED" in live
    assert out.count("forecast   next 16 points") == 5 and out.count("most unusual points: #") == 5
    # The bad series, with its field violation.
    assert "status     INVALID_ARGUMENT" in out
    assert "violation  series.values[1]: must be a finite number" in out
    # The SQL checks, on the stack's own SQLite file found through SATLAS_RUN_DIR.
    sql = out.split("\n7. SQL checks on the database (sqlite)")[1].split("\n8. ")[0]
    for model in demo.MODELS:
        assert re.search(rf"^\s+completed\s+{model}\s+5$", sql, re.MULTILINE), sql  # by state and model
        assert re.search(rf"^\s+{model}\s+5\s+0\.\d+$", sql, re.MULTILINE), sql  # count, mean inference time
    assert "SELECT model_name, COUNT(*) FROM inference_results WHERE status = 'completed' GROUP BY model_name;" in sql
    assert len(re.findall(r"^\s+[0-9a-f-]{36}\s+\w+\s+completed\s+0\.\d+$", sql, re.MULTILINE)) == 10, sql
    assert f"{stack.flower_url:<40} answers" in out and f"{stack.dashboard_url}dashboard.html" in out
    assert out.rstrip().endswith("Demo done: all 10 jobs SUCCEEDED.")


def test_the_demo_says_which_service_is_down():
    lines: list[str] = []
    down = ["--ingest", "127.0.0.1:1", "--orchestrator", "127.0.0.1:1", "--analysis", "127.0.0.1:1"]
    assert demo.main(down, out=lines.append) == 2
    assert sum("NOT SERVING" in line for line in lines) == 3 and "make up" in lines[-1]


def job(job_id: str, state: int, version: int, **kw) -> job_pb2.Job:
    return job_pb2.Job(job_id=job_id, model_name="vae_timeseries", state=state, version=version, **kw)


def test_follow_shows_each_change_of_the_demos_jobs_once():
    follow = demo.Follow({"a": demo.Tracked("linear", "vae_timeseries"),
                          "b": demo.Tracked("seasonal", "transformer_timeseries")}, t0=10.0)
    assert follow.see(job("other", js.JOB_STATE_PENDING, 1), 10.1) is None  # not ours
    line = follow.see(job("a", js.JOB_STATE_PENDING, 1), 10.0125)
    assert line == "  +   12.5 ms  linear       vae_timeseries          PENDING"
    assert follow.see(job("a", js.JOB_STATE_PENDING, 1), 10.02) is None  # replayed
    assert follow.see(job("a", js.JOB_STATE_PENDING, 2), 10.02) is None  # a newer version, the same state
    timings = job_pb2.JobTimings(queue_seconds=0.01, inference_seconds=0.005, total_seconds=0.03)
    end = follow.see(job("a", js.JOB_STATE_SUCCEEDED, 4, timings=timings), 10.05)
    assert end.endswith("SUCCEEDED  queue 10.0 ms, inference 5.0 ms, total 30.0 ms")
    assert follow.see(job("a", js.JOB_STATE_RUNNING, 3), 10.06) is None  # late and stale
    assert follow.waiting == ["b"] and set(follow.final) == {"a"}
    failed = follow.see(job("b", js.JOB_STATE_FAILED, 3, error="boom"), 10.1)
    assert failed.endswith("FAILED     error: boom") and follow.waiting == []


def test_top_points_and_cells():
    assert demo.top_points([0.1, 3.0, 0.5, 3.0, 2.0]) == [(1, 3.0), (3, 3.0), (4, 2.0)]
    assert demo.top_points([1.0], k=3) == [(0, 1.0)]
    assert display.cell(None) == "-" and display.cell(0.0557231) == "0.05572" and display.cell(5) == "5"
    when = dt.datetime(2026, 11, 22, 8, 5, 13, 914321)
    assert display.cell(when) == display.cell("2026-11-22 08:05:13.914321") == "2026-11-22 08:05:13.914"
    assert display.cell("completed") == "completed"
    assert display.cell("bb0dc4f7-54cd-40ea-9c94-428b13f42a23") == "bb0dc4f7-54cd-40ea-9c94-428b13f42a23"


def test_defaults_follow_the_stack(tmp_path):
    assert demo.default_database_url({"DATABASE_URL": "postgresql://u@h/db"}) == "postgresql://u@h/db"
    assert demo.default_database_url({"SATLAS_RUN_DIR": str(tmp_path)}) == f"sqlite:///{tmp_path / 'satlas.db'}"
    assert demo.default_database_url({}) == f"sqlite:///{ROOT / '.run' / 'satlas.db'}"
    assert demo.default_dashboard_url({}) == "http://localhost:8080/"
    assert demo.default_dashboard_url({"ENVOY_PORT": "9000"}) == "http://localhost:9000/"
    assert demo.default_flower_url({"FLOWER_PORT": "5600"}) == "http://localhost:5600"
    assert demo.sqlite_path("sqlite:////tmp/x.db") == Path("/tmp/x.db")
    assert demo.sqlite_path("sqlite:///rel/x.db?mode=ro") == Path("rel/x.db")
    assert demo.sqlite_path("postgresql://u@h/db") is None and demo.sqlite_path("sqlite://") is None

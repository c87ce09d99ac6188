"""Overload (python -m tools.bench.overload): three times the mesh's measured maximum, open-loop
from three producer processes; the excess is refused with RESOURCE_EXHAUSTED at once, the
unfinished jobs stay under ORCHESTRATOR_MAX_UNFINISHED, memory stops growing, and every
accepted job finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4000


def test_three_times_the_maximum_is_refused_in_time_and_nothing_accepted_is_lost(tmp_path):
    report = tmp_path / "overload.json"
    try:
        done = subprocess.run([sys.executable, "-m", "tools.bench.overload", "--factor", "3", "--seconds", "20",
                               "--probe-seconds", "5", "--producers", "3", "--max-unfinished", str(LIMIT),
                               "--json", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as exc:  # it takes ~45 s: say where it stopped
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"no end in 400 s; its output:\n{out[-4000:]}")
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(report.read_text())
    assert out["ok"] and done.returncode == 0, done.stdout[-3000:]
    assert out["answers"].get("8", 0) > 0  # the excess was refused by the orchestrator's bound ...
    assert "ORCHESTRATOR_MAX_UNFINISHED" in out["messages"]["8"]
    assert set(out["answers"]) <= {"0", "8"} and out["unanswered"] == 0  # ... and nothing else went wrong
    assert out["slowest_answer_s"] < 10
    assert out["peak_unfinished"] <= LIMIT * 1.1
    assert out["statuses"] == {"completed": out["accepted_jobs"]}
    # Bounded: no process reaches, in the last third, more than a little past its peak before it
    # (the ingest's backlog comes and goes, so a plain start-to-end difference says little).
    samples = out["samples"]
    cut = 2 * len(samples) // 3
    late = {n: max(s["rss_mb"][n] for s in samples[cut:]) - max(s["rss_mb"][n] for s in samples[:cut])
            for n in samples[0]["rss_mb"]}
    assert all(mb < 60 for mb in late.values()), late

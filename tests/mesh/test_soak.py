"""The short chaos soak (`python -m tools.soak --duration 0`): 100 jobs/s on PostgreSQL while
each fault kind strikes once, every real process killed by PID (or stalled, or its server
restarted); then nothing accepted may be lost, doubled or stuck."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools.soak.faults import KINDS

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_with_every_fault_once_loses_nothing(tmp_path):
    report = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-u", "-m", "tools.soak", "--duration", "0", "--every", "14",
                           "--database", "postgresql", "--drain", "90", "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert report.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    out = json.loads(report.read_text())
    v = out["verdict"]
    assert [f["kind"] for f in out["faults"]] == list(KINDS)
    # Each killed process came back (its supervisor, `make up`'s launcher, restarted it).
    assert all(f["back_s"] is not None for f in out["faults"] if f["kind"] != "worker-child"), out["faults"]
    assert v["accepted_jobs"] > 0.9 * out["load"]["offered_jobs_s"] * out["seconds"]
    assert (v["lost"], v["stuck"], v["doubled"], v["key_mismatch"]) == ([], [], [], [])
    assert v["failed_without_reason"] == [] and v["unanswered_requests"] == 0
    assert v["resent_on_purpose"] > 0  # the same key was asked again, and answered with the same ids
    assert all(w["succeeded_twice"] == [] for w in v["watchers"].values())
    assert done.returncode == 0 and "verdict: nothing lost, nothing doubled" in done.stdout, done.stdout[-4000:]
    assert Path(report.with_suffix(".png")).stat().st_size > 10_000

"""`python -m tools.bench.mesh` stops on SIGTERM and on Ctrl-C (SIGINT) in the middle of a step,
within 15 s, and leaves no process behind: not Triton, not the Celery worker, nothing it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mesh_helpers import processes_marked

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_the_benchmark_stops_with_everything_it_started(sig, tmp_path):
    marker = f"SATLAS_BENCH_STOP_TEST={uuid.uuid4().hex}"
    key, value = marker.split("=")
    bench = subprocess.Popen(
        [sys.executable, "-u", "-m", "tools.bench.mesh", "--sweep", "100", "--step-seconds", "60", "--sustain", "0",
         "--json", str(tmp_path / "mesh.json")],
        cwd=ROOT, env={**os.environ, key: value}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 180
        for line in bench.stdout:  # the step is running once its progress shows
            lines.append(line)
            if "100 jobs/s" in line and "submitted" in line or time.monotonic() > deadline:
                break
        assert any("submitted" in line for line in lines), "".join(lines)
        assert len(processes_marked(marker)) > 5  # the stack is up: Valkey, Triton and its stubs, the services
        sent = time.monotonic()
        bench.send_signal(sig)
        out, _ = bench.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if bench.poll() is None:
            bench.kill()
    assert took < 15, f"took {took:.1f}s to stop"
    assert bench.returncode == 130, out
    assert "interrupted" in out
    leftover = processes_marked(marker)
    assert leftover == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in leftover]

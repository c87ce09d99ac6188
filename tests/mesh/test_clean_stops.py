"""Every tool stops on Ctrl-C (SIGINT) and on SIGTERM within 15 s and leaves no process behind;
`make up` restarts a process killed by PID, and gives up on one that keeps crashing.

(`make run` is checked in test_make_run, the benchmark in test_bench_stop, the simulator in
test_simulator; the soak's full run in test_soak.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from mesh_helpers import processes_marked

ROOT = Path(__file__).resolve().parents[2]
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
FREE_PORTS = {"INGEST_ADDR": "127.0.0.1:0", "ORCHESTRATOR_ADDR": "127.0.0.1:0", "ANALYSIS_ADDR": "127.0.0.1:0",
              "FLOWER_PORT": "0", "TRITON_HTTP_PORT": "0", "TRITON_GRPC_PORT": "0", "TRITON_METRICS_PORT": "0",
              "ENVOY_PORT": "0", "ENVOY_ADMIN_PORT": "0", "WEB_PORT": "0", "INGEST_METRICS_ADDR": "127.0.0.1:0",
              "ORCHESTRATOR_METRICS_ADDR": "127.0.0.1:0", "ANALYSIS_METRICS_ADDR": "127.0.0.1:0"}


class Tool:
    """A tool run as a user runs it, its output collected, its processes found by a marker."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.marker = f"SATLAS_STOP_TEST={uuid.uuid4().hex}"
        key, value = self.marker.split("=")
        environ = {**{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TRITON_URL")},
                   **(env or {}), key: value}
        self.process = subprocess.Popen([sys.executable, "-u", *args], cwd=ROOT, env=environ, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.out[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.out[-3000:]}"
            time.sleep(0.1)

    def stop(self, sig: int) -> tuple[int, float]:
        """Sends ``sig``; the exit code and the seconds it took."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, time.monotonic() - sent

    def __enter__(self) -> "Tool":
        return self

    def __exit__(self, *exc) -> None:  # a failed test must not leave the tool running
        if self.process.poll() is None:
            self.process.kill()

    def leftovers(self) -> list[bytes]:
        time.sleep(0.5)  # init reaps what the dead process groups left
        return [Path(f"/proc/{p}/cmdline").read_bytes()[:100] for p in processes_marked(self.marker)]


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "stack.json").read_text())


def wait_for_new_pid(run_dir: Path, name: str, old: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = state(run_dir)["pids"].get(name)
        except (OSError, ValueError):
            pid = None
        if pid and pid != old:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"{name} was not restarted within {timeout} s")


@SIGNALS
def test_make_up_restarts_a_killed_process_and_stops_with_everything(sig, tmp_path):
    with Tool(["-m", "launcher"], {**FREE_PORTS, "SATLAS_RUN_DIR": str(tmp_path)}) as up:
        up.wait_for("Satlas is up:")
        pids = state(tmp_path)["pids"]
        assert set(pids) >= {"redis", "triton", "orchestrator", "ingest", "analysis", "envoy", "worker"}
        victim = "orchestrator" if sig == signal.SIGTERM else "envoy"
        os.kill(pids[victim], signal.SIGKILL)
        new = wait_for_new_pid(tmp_path, victim, pids[victim])
        up.wait_for(f"{victim} is back (pid {new})")
        assert "exited with code -9" in up.out
        assert len(processes_marked(up.marker)) > 5
        code, took = up.stop(sig)
    assert took < 15, f"took {took:.1f} s"
    assert code == 0, up.out[-2000:]
    assert up.leftovers() == []


def test_make_up_gives_up_on_a_process_that_keeps_crashing(tmp_path):
    with Tool(["-m", "launcher", "--only", "web"],
              {**FREE_PORTS, "SATLAS_RUN_DIR": str(tmp_path), "STACK_RESTART_LIMIT": "2"}) as up:
        up.wait_for("Satlas is up:")
        for _ in range(2):
            old = state(tmp_path)["pids"]["web"]
            os.kill(old, signal.SIGKILL)
            wait_for_new_pid(tmp_path, "web", old)
        os.kill(state(tmp_path)["pids"]["web"], signal.SIGKILL)  # the third within the window
        code = up.process.wait(30)
    assert code == 1
    assert "web crashed more than 2 times within 60 s" in up.out and "giving up" in up.out
    assert up.leftovers() == []


@SIGNALS
def test_the_demo_stops(sig, shared_stack):
    s = shared_stack
    demo = Tool(["-m", "tools.demo", "--ingest", s.ingest, "--orchestrator", s.orchestrator, "--analysis", s.analysis,
                 "--dashboard-url", s.dashboard_url, "--flower-url", s.flower_url, "--pause", "2"],
                {"SATLAS_RUN_DIR": str(s.settings.run_dir)})
    demo.wait_for("2.")  # into its second step
    code, took = demo.stop(sig)
    assert took < 15
    assert code == 130, demo.out
    assert demo.leftovers() == []


@SIGNALS
def test_the_soak_stops_with_everything_it_started(sig, tmp_path):
    with Tool(["-m", "tools.soak", "--duration", "120", "--every", "5", "--warmup", "3",
               "--faults", "triton-stall,ingest", "--stall", "30", "--database", "postgresql",
               "--json", str(tmp_path / "soak.json")]) as soak:
        soak.wait_for("fault: SIGSTOP triton")  # Triton frozen: the stop must let it go and end it too
        code, took = soak.stop(sig)
    assert took < 15, f"took {took:.1f} s\n{soak.out[-2000:]}"
    assert code == 130, soak.out[-2000:]
    assert "interrupted" in soak.out
    assert soak.leftovers() == []  # its PostgreSQL too: runuser passes the marker on


def test_make_run_stops_on_sigterm_with_the_simulators_summary(tmp_path):
    """`make run` under SIGTERM (test_make_run sends Ctrl-C): the simulator ends with its summary first."""
    with Tool(["-m", "launcher", "--simulator"],
              {**FREE_PORTS, "SATLAS_RUN_DIR": str(tmp_path),
               "SIMULATOR_ARGS": "--interval 0.2 --max-batch 2 --follow"}) as run:
        run.wait_for(" SUCCEEDED ")
        code, took = run.stop(signal.SIGTERM)
    assert took < 15, f"took {took:.1f} s"
    assert code == 0, run.out[-2000:]
    assert "summary:" in run.out
    assert run.leftovers() == []

"""The mesh tier: one whole stack for the session, shared by the tests that neither kill nor
pause its parts. It keeps jobs in PostgreSQL and serves from the session's Triton, so it starts
only the services (a few seconds). Tests isolate inside it by their own job ids and by counting
before and after, never by an empty database. Tests that kill a process or pause Triton, or need
another broker, start a stack of their own (test_mesh_faults, test_broker_rabbitmq), and so does
the idle-stream check, whose page must see no one else's jobs for a minute (``idle_page``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from launcher.stack import Stack, StackSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory, postgres_url, triton):
    settings = StackSettings.isolated(tmp_path_factory.mktemp("shared-stack"), database_url=postgres_url,
                                      triton_url=triton.settings.grpc_url)
    with Stack(settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def shared_processes(shared_stack, triton) -> dict[str, int]:
    """The pid of every process serving the shared stack, the session's Triton included."""
    return {**{n: p.pid for n, p in shared_stack.processes.items()}, "triton": triton.process.pid}


IDLE_TEST = "test_browser.py::test_a_stream_idle_for_60_s_survives"
IDLE_S = 65.0  # past the server's 30 s keepalive ping, twice


class IdlePage:
    """``idle_page.py`` running against a stack nobody else submits to (the session's Triton)."""

    def __init__(self, stack: Stack):
        self.stack, self.idle_s = stack, IDLE_S
        self.started = time.monotonic()
        # A session of its own, so that close() takes playwright's driver and Chromium along.
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("idle_page.py")),
                                         stack.signed_in_url("dashboard.html"), str(IDLE_S)], cwd=ROOT, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.other: list[str] = []  # anything else it printed, for the failure message
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.other.append(line.rstrip())

    def next(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"idle_page.py said nothing for {timeout:g} s (exit code "
                                 f"{self.process.poll()}); other output: {self.other[-20:]}") from None

    def send(self, job_id: str) -> None:
        self.process.stdin.write(job_id + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture(scope="session", autouse=True)
def idle_page(request, tmp_path_factory):
    """Started with the mesh tier when the idle-stream test is collected, so its minute of idling
    runs while the tests before it do; ``test_browser`` checks it."""
    if not any(item.nodeid.endswith(IDLE_TEST) for item in request.session.items):
        yield None
        return
    assert (ROOT / "web" / "dist" / "index.html").exists(), "the dashboard is not built: make web"
    triton = request.getfixturevalue("triton")  # only now: a mesh run without this test needs none
    # One job goes through it: one worker process and no Flower, so it takes little from the others.
    settings = StackSettings.isolated(tmp_path_factory.mktemp("idle-stack"), triton_url=triton.settings.grpc_url,
                                      worker_concurrency=1,
                                      only=("redis", "orchestrator", "analysis", "ingest", "web", "envoy", "worker"))
    with Stack(settings) as stack:
        page = IdlePage(stack)
        try:
            yield page
        finally:
            page.close()

"""`make run` as a user meets it: `python -m launcher --simulator` in the foreground, jobs
flowing on the terminal and on the dashboard URL it prints, and Ctrl-C stopping every process it
started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mesh_helpers import processes_marked

ROOT = Path(__file__).resolve().parents[2]


def dashboard_shows_jobs_moving(url: str) -> bool:
    """The printed sign-in URL, in Chromium: signed in, the feed is live and fills with the simulator's jobs."""
    from playwright.sync_api import expect, sync_playwright

    from tools.bench.dashboard import launch

    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto(url)
        expect(page.locator(".account")).to_contain_text("signed in", timeout=15_000)
        page.goto(url.partition("#")[0] + "#/jobs")  # the token stays for the session
        expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
        rows = page.locator('tr[data-testid="feed-row"]')
        expect(rows.nth(1)).to_be_visible(timeout=15_000)  # new jobs arrive: PENDING → … rows
        expect(page.locator(".feed .state", has_text="SUCCEEDED").first).to_be_visible(timeout=15_000)
        browser.close()
    return True  # each expect above raises if the page does not show it


def test_make_run_shows_jobs_flowing_and_ctrl_c_stops_everything(tmp_path):
    assert (ROOT / "web" / "dist" / "index.html").exists(), "the dashboard is not built: make web"
    env = {**os.environ, "SATLAS_RUN_DIR": str(tmp_path), "INGEST_ADDR": "127.0.0.1:0",
           "ORCHESTRATOR_ADDR": "127.0.0.1:0", "ANALYSIS_ADDR": "127.0.0.1:0", "FLOWER_PORT": "0",
           "TRITON_HTTP_PORT": "0", "TRITON_GRPC_PORT": "0", "TRITON_METRICS_PORT": "0",
           "ENVOY_PORT": "0", "ENVOY_ADMIN_PORT": "0", "WEB_PORT": "0", "INGEST_METRICS_ADDR": "127.0.0.1:0",
           "ORCHESTRATOR_METRICS_ADDR": "127.0.0.1:0", "ANALYSIS_METRICS_ADDR": "127.0.0.1:0",
           "SIMULATOR_ARGS": "--interval 0.2 --max-batch 2 --follow --seed 3"}
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "TRITON_URL"):
        env.pop(name, None)  # the embedded defaults
    launcher = subprocess.Popen([sys.executable, "-m", "launcher", "--simulator"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(launcher.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while sum(" SUCCEEDED " in line for line in lines) < 4:
            assert launcher.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        assert processes_marked(str(tmp_path)), "the marker does not find the stack's processes"
        url = re.search(r"sign in\s+(http://\S+#token=\S+)", "".join(lines)).group(1)
        assert dashboard_shows_jobs_moving(url)
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground group
        assert launcher.wait(60) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
    reader.join(10)
    out = "".join(lines)
    assert "Satlas is up:" in out and re.search(r"ingest\s+127\.0\.0\.1:\d+ \(gRPC\)", out)
    assert "Satlas data simulator" in out and "summary:" in out  # the simulator stopped with its summary
    # It was stopped before the services: everything it sent got its answer and result.
    assert re.search(r"succeeded \d+\s+failed 0\s+pending 0", out), out[-800:]
    time.sleep(0.5)  # init reaps what the dead process groups left
    assert processes_marked(str(tmp_path)) == []

"""The dashboard under load, in real Chromium: how smooth it stays, and a screenshot.

    python -m tools.bench.dashboard                      # isolated stack, 500 jobs/s offered for 30 s
    python -m tools.bench.dashboard --screenshot docs/dashboard.png
    python -m tools.bench.dashboard --url http://localhost:8080 --ingest 127.0.0.1:50051  # a running stack

Opens the live monitoring view (/dashboard.html, through Envoy) in Debian's Chromium, driven by
playwright with /usr/bin/chromium (never a downloaded browser), offers load over one StreamSeries
stream, and measures inside the page while it flows:
  - frame time: the intervals between requestAnimationFrame callbacks, and long tasks (> 50 ms);
  - feed updates: how often the live feed's rows change in the DOM (throttled to 4/s), and the
    most rows it ever held (bounded);
  - interaction: the Event Timing duration (input to next paint) of clicks on a feed filter
    (the API reports only events of 16 ms or more, so faster clicks are not counted);
  - display latency: marker jobs submitted from here every second, from SubmitSeries to their
    row in the feed (Date.now() in the page and time.time() here read the same clock).
Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc

from satkit import client
from tools.bench.measure import MODELS, make_series, paced_requests
from tools.display import short_id

CHROMIUM = "/usr/bin/chromium"
# The machine has no outside network: without these, Chromium keeps trying to reach Google.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1440, "height": 1100}

# Installed before any page script runs; everything it records lives in window.__probe.
PROBE = """
(() => {
  const p = window.__probe = { frames: [], longtasks: [], events: [], feedUpdates: [], seen: {}, maxRows: 0 };
  let last = performance.now();
  const tick = (t) => { p.frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const observe = (type, fn, opts = {}) => {
    try { new PerformanceObserver((l) => l.getEntries().forEach(fn)).observe({ type, buffered: true, ...opts }); }
    catch (e) { /* entry type not supported */ }
  };
  observe("longtask", (e) => p.longtasks.push(e.duration));
  observe("event", (e) => { if (e.name === "click") p.events.push(e.duration); }, { durationThreshold: 16 });
  new MutationObserver((records) => {
    let feed = false;
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1 || !n.matches('tr[data-testid="feed-row"]')) continue;
        feed = true;
        const id = n.querySelector("a.mono")?.textContent;
        if (id && !(id in p.seen)) p.seen[id] = Date.now();
      }
    }
    if (feed) {
      p.feedUpdates.push(performance.now());
      p.maxRows = Math.max(p.maxRows, document.querySelectorAll('tr[data-testid="feed-row"]').length);
    }
  }).observe(document, { childList: true, subtree: true });
})();
"""


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def percentiles(values, qs=(50, 95, 99, 100)) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    names = {50: "p50", 95: "p95", 99: "p99", 100: "max"}
    return {names[q]: round(float(np.percentile(a, q)), 1) if a.size else 0.0 for q in qs}


class Load(threading.Thread):
    """One StreamSeries stream at ``jobs_per_s`` (one job per model per series), paced open-loop."""

    def __init__(self, ingest: str, jobs_per_s: float, seconds: float, length: int = 64):
        super().__init__(daemon=True)
        self.ingest, self.rate, self.seconds = ingest, jobs_per_s / len(MODELS), seconds
        self.series = make_series(64, length)
        self.accepted = self.rejected = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        requests = paced_requests(self.series, self.rate, int(self.rate * self.seconds), stop=self.stopped)
        with grpc.insecure_channel(self.ingest) as channel:
            for r in ipb_grpc.IngestServiceStub(channel).StreamSeries(requests, timeout=self.seconds + 120):
                if r.HasField("error"):
                    self.rejected += 1
                else:
                    self.accepted += len(r.job_ids)


def measure(page, ingest: str, jobs_per_s: float = 500, seconds: float = 30, warmup_s: float = 3,
            screenshot: Path | None = None) -> dict:
    """Load the already-open dashboard ``page`` for ``seconds`` and report what the page did."""
    load = Load(ingest, jobs_per_s, warmup_s + seconds)
    load.start()
    time.sleep(warmup_s)
    page.evaluate("() => { const p = window.__probe; p.frames = []; p.longtasks = []; p.events = []; p.feedUpdates = []; }")
    markers: dict[str, float] = {}
    clicks = 0
    filter_box = page.get_by_label("running", exact=True)  # a state filter on the feed: a click re-subscribes it
    with grpc.insecure_channel(ingest) as channel:
        stub = ipb_grpc.IngestServiceStub(channel)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            sent = time.time() * 1000
            reply = stub.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": load.series[0]}, models=MODELS[:1]),
                                      timeout=30)
            markers[short_id(reply.job_ids[0])] = sent  # as the feed shows it
            if screenshot and not clicks and time.monotonic() > t_end - seconds / 2:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)  # mid-load, before the clicks
            if clicks < 6 and time.monotonic() > t_end - seconds / 2:
                filter_box.click()
                clicks += 1
            time.sleep(1.0)
    if clicks % 2:
        filter_box.click()  # leave the filter as it was
    probe = page.evaluate("() => window.__probe")
    rate_text = page.locator(".feed h2 .muted").first.inner_text()
    load.stopped.set()
    load.join(timeout=30)
    shown = [probe["seen"][m] - sent for m, sent in markers.items() if m in probe["seen"]]
    updates = np.diff(probe["feedUpdates"]) if len(probe["feedUpdates"]) > 1 else []
    return {
        "offered_jobs_s": jobs_per_s, "seconds": seconds, "jobs_accepted": load.accepted,
        "rejected_series": load.rejected, "feed_events_s_shown": rate_text,
        "frames": len(probe["frames"]), "frame_ms": percentiles(probe["frames"]),
        "frames_over_50ms": sum(f > 50 for f in probe["frames"]),
        "long_tasks": len(probe["longtasks"]), "long_task_ms_per_s": round(sum(probe["longtasks"]) / seconds, 1),
        "feed_updates_per_s": round(len(probe["feedUpdates"]) / seconds, 2),
        "feed_update_interval_ms": percentiles(updates),
        "feed_rows_max": probe["maxRows"],
        "click_to_paint_ms": percentiles(probe["events"]), "clicks": clicks, "click_events_timed": len(probe["events"]),
        "markers_sent": len(markers), "markers_shown": len(shown), "submit_to_row_ms": percentiles(shown),
    }


def open_dashboard(browser, url: str, token: str = ""):
    """dashboard.html, signed in with ``token`` (a `#token=` link, as `make run` prints)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.add_init_script(PROBE)
    page.goto(url.rstrip("/") + "/dashboard.html" + (f"#token={token}" if token else ""))
    page.locator(".feed .badge.live").wait_for(timeout=30_000)
    return page


def summary(r: dict) -> str:
    f, u, c, m = r["frame_ms"], r["feed_update_interval_ms"], r["click_to_paint_ms"], r["submit_to_row_ms"]
    return "\n".join([
        f"dashboard at {r['offered_jobs_s']:.0f} jobs/s offered for {r['seconds']:.0f} s "
        f"({r['jobs_accepted']} jobs accepted, feed showing {r['feed_events_s_shown']})",
        f"  frame time      p50 {f['p50']} ms  p95 {f['p95']} ms  p99 {f['p99']} ms  max {f['max']} ms "
        f"({r['frames_over_50ms']} of {r['frames']} frames over 50 ms)",
        f"  long tasks      {r['long_tasks']}, {r['long_task_ms_per_s']} ms per second",
        f"  feed updates    {r['feed_updates_per_s']}/s, interval p50 {u['p50']} ms p95 {u['p95']} ms; "
        f"at most {r['feed_rows_max']} rows in the DOM",
        f"  click → paint   p50 {c['p50']} ms  max {c['max']} ms ({r['click_events_timed']} of {r['clicks']} clicks timed)",
        f"  submit → row    p50 {m['p50']} ms  max {m['max']} ms ({r['markers_shown']} of {r['markers_sent']} marker jobs seen)",
    ])


@contextmanager
def target(args):
    """(dashboard URL, ingest address, token): the given ones, or an isolated stack's."""
    if args.url:
        yield args.url, args.ingest, client.find_token() if args.token is None else args.token
        return
    from launcher.stack import Stack, StackSettings

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        with Stack(StackSettings.isolated(Path(tmp))) as stack:
            yield stack.dashboard_url, stack.ingest, stack.token


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="the dashboard's origin (Envoy), e.g. http://localhost:8080; default: an isolated stack")
    ap.add_argument("--ingest", default="127.0.0.1:50051", help="IngestService address with --url")
    ap.add_argument("--rate", type=float, default=500, help="offered jobs/s [500]")
    ap.add_argument("--seconds", type=float, default=30, help="measured seconds [30]")
    ap.add_argument("--screenshot", type=Path, help="a full-page PNG of the view halfway through the load")
    ap.add_argument("--json", type=Path, default=Path("bench-results/dashboard.json"))
    ap.add_argument("--token", help="to sign in with --url (default: SATLAS_TOKEN, else $SATLAS_RUN_DIR/auth/token)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with target(args) as (url, ingest, token), sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = open_dashboard(browser, url, token)
            result = measure(page, ingest, args.rate, args.seconds, screenshot=args.screenshot)
        finally:
            browser.close()
    print(summary(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}" + (f" and {args.screenshot}" if args.screenshot else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

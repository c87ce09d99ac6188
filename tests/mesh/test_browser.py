"""The dashboard in real Chromium (Debian's, driven by playwright) against the real stack, through
Envoy: loads clean, submits and follows a job, shows Python's jobs live, survives an idle stream
and an Envoy restart, shows field violations, and stays smooth under load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mesh_helpers import MODELS, clients_of, paused, series
from playwright.sync_api import expect, sync_playwright
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb

from launcher import auth
from tools.bench import dashboard as bench_dashboard
from tools.display import short_id

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ("#/", "#/jobs", "#/results", "#/models", "#/submit")


@pytest.fixture(scope="module")
def mesh(shared_stack):
    assert (ROOT / "web" / "dist" / "index.html").exists(), "the dashboard is not built: make web"
    return shared_stack


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = bench_dashboard.launch(pw)
        yield b
        b.close()


@pytest.fixture()
def page(browser, mesh):
    """A fresh page, signed in (the token kept for the session, as the sign-in view keeps it),
    that records console errors and uncaught exceptions; none may happen."""
    p = browser.new_page(viewport=bench_dashboard.VIEWPORT)
    p.add_init_script(bench_dashboard.PROBE)
    p.add_init_script(f"window.sessionStorage.setItem('satlas.token', {json.dumps(mesh.token)})")
    p.problems = []
    p.on("console", lambda m: m.type == "error" and p.problems.append(f"console: {m.text}"))
    p.on("pageerror", lambda e: p.problems.append(f"pageerror: {e}"))
    p.on("response", lambda r: r.status >= 400 and p.problems.append(f"HTTP {r.status}: {r.url}"))
    yield p
    p.close()


@pytest.fixture()
def ingest(mesh):
    with clients_of(mesh) as (ingest, _):
        yield ingest


def submit(ingest, values, models=MODELS) -> list[str]:
    return list(ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": values}, models=models),
                                    timeout=30).job_ids)


def feed_row(page, job_id: str):
    return page.locator('tr[data-testid="feed-row"]', has=page.locator(f'a.mono:text-is("{short_id(job_id)}")'))


def test_every_view_loads_with_no_console_errors(mesh, page, ingest):
    submit(ingest, series(64))  # so that results and charts have something to show
    page.goto(mesh.dashboard_url)
    expect(page.locator(".overview .tile").first).to_be_visible(timeout=15_000)
    for view in VIEWS:
        page.goto(mesh.dashboard_url + view)
        page.locator("main .panel").first.wait_for(timeout=15_000)
        if view == "#/models":
            expect(page.locator(".models")).to_contain_text("transformer_timeseries")
            # what the served models' parameters say they are calibrated to
            expect(page.locator(".models")).to_contain_text("flag at 1 % false positives")
            expect(page.locator(".models")).to_contain_text("quantiles 0.1, 0.5, 0.9")
        page.wait_for_timeout(500)
        # grpc-web errors arrive as HTTP 200: the page shows them in alert boxes.
        expect(page.get_by_role("alert")).to_have_count(0)
    page.goto(mesh.dashboard_url + "#/results")
    expect(page.locator('[data-testid="result-card"]').first).to_be_visible(timeout=15_000)
    page.goto(mesh.dashboard_url + "dashboard.html")
    expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
    expect(page.locator(".overview .tile").first).to_be_visible(timeout=15_000)
    page.wait_for_timeout(1500)  # a poll or two more
    assert page.problems == []


def test_a_job_submitted_from_the_page_succeeds_with_a_chart(mesh, page):
    page.goto(mesh.dashboard_url + "#/submit")
    page.get_by_label("pattern").select_option("seasonal")
    page.get_by_label("length").fill("64")
    page.get_by_role("button", name="generate").click()
    page.get_by_role("button", name="submit").click()
    jobs = page.locator('[data-testid="job-detail"]')
    expect(jobs).to_have_count(2, timeout=15_000)
    for i in range(2):
        job = jobs.nth(i)
        expect(job.locator("p .state")).to_have_text("SUCCEEDED", timeout=60_000)
        expect(job.locator(".timeline li").last).to_contain_text("SUCCEEDED")
        expect(job.locator("svg path.line.output")).to_have_count(1, timeout=15_000)
        expect(job.locator("svg path.line.input")).to_have_count(1)
    expect(page.locator("figure.chart .legend.output", has_text="forecast")).to_have_count(1)
    expect(page.locator("figure.chart .legend.output", has_text="reconstruction")).to_have_count(1)
    assert page.problems == []


def test_a_bad_series_from_the_page_shows_its_field_violation(mesh, page):
    page.goto(mesh.dashboard_url + "#/submit")
    page.get_by_label("values").fill("1, 2")  # shorter than either model takes
    page.get_by_role("button", name="submit").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("INVALID_ARGUMENT", timeout=15_000)
    expect(alert.locator(".violations code").first).to_have_text("series.values")
    expect(alert.locator(".violations")).to_contain_text("has 2 points")
    expect(page.locator('[data-testid="job-detail"]')).to_have_count(0)


def test_a_job_submitted_from_python_shows_in_the_live_feed_within_2_s(mesh, page, ingest):
    page.goto(mesh.dashboard_url + "#/jobs")
    expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
    waits = []
    for n in range(3):
        t0 = time.time() * 1000
        job_id = submit(ingest, series(64, seed=n), models=MODELS[:1])[0]
        row = feed_row(page, job_id)
        row.wait_for(timeout=10_000)
        waits.append(page.evaluate(f"() => window.__probe.seen[{short_id(job_id)!r}]") - t0)
        expect(row.locator(".state")).to_have_text("SUCCEEDED", timeout=30_000)
    print(f"\nPython SubmitSeries → row in the feed: {', '.join(f'{w:.0f} ms' for w in waits)}")
    assert max(waits) < 2000, waits
    assert page.problems == []


def test_a_stream_idle_for_60_s_survives(idle_page):
    """The page opened at the start of the mesh tier (conftest.idle_page) and left alone since."""
    assert idle_page.next(timeout=30)["live"]
    idled = idle_page.next(timeout=idle_page.idle_s + 60)
    assert time.monotonic() - idle_page.started >= idle_page.idle_s
    assert idled["badges"] == [], "the feed's stream was cut and reopened while idle"
    with clients_of(idle_page.stack) as (ingest, _):
        job_id = submit(ingest, series(64), models=MODELS[:1])[0]
    idle_page.send(job_id)
    after = idle_page.next(timeout=30)
    assert after["shown"], "the job did not reach the idle feed within 2 s"
    assert after["problems"] == []


def test_the_page_reconnects_by_itself_after_envoy_restarts(mesh, page, ingest):
    page.goto(mesh.dashboard_url + "dashboard.html")
    badge = page.locator(".feed .badge")
    expect(badge).to_have_text("live", timeout=15_000)
    mesh.stop("envoy")
    expect(badge).to_contain_text("reconnecting", timeout=15_000)
    mesh.restart("envoy")
    expect(badge).to_have_text("live", timeout=30_000)
    job_id = submit(ingest, series(64), models=MODELS[:1])[0]
    expect(feed_row(page, job_id)).to_be_visible(timeout=5_000)
    expect(page.locator(".overview [role=alert]")).to_have_count(0, timeout=10_000)
    # The browser logs each stream cut and each refused request while Envoy is down (net::ERR_…);
    # nothing else may go wrong.
    assert [p for p in page.problems if "Failed to load resource: net::ERR_" not in p] == []


def test_the_monitoring_view_stays_responsive_at_500_jobs_per_s(mesh, browser):
    page = bench_dashboard.open_dashboard(browser, mesh.dashboard_url, mesh.token)
    result = bench_dashboard.measure(page, mesh.ingest, jobs_per_s=500, seconds=10)
    print("\n" + bench_dashboard.summary(result))
    # It was measured at all: frames ran, the feed filled and moved, marker jobs showed.
    assert result["frames"] > 10 * 10 and result["markers_shown"] > 0
    assert 50 <= result["feed_rows_max"] <= 100  # the list filled, and stayed bounded
    assert 2 <= result["feed_updates_per_s"] <= 6  # throttled rendering (every 250 ms)
    # Loose bounds: the stack saturates both cores beside Chromium here; rendering every event
    # instead of every 250 ms would blow through them.
    assert result["frame_ms"]["p95"] <= 200 and result["click_to_paint_ms"]["max"] <= 500
    page.close()


def fresh_page(browser, token: str | None = None):
    """A page with nothing kept (no token unless ``token``), recording what went wrong."""
    p = browser.new_page(viewport=bench_dashboard.VIEWPORT)
    if token is not None:
        p.add_init_script(f"window.sessionStorage.setItem('satlas.token', {json.dumps(token)})")
    p.problems = []
    p.on("pageerror", lambda e: p.problems.append(f"pageerror: {e}"))
    return p


def test_without_a_token_the_page_asks_for_one_and_signs_in_with_it(mesh, browser):
    page = fresh_page(browser)
    page.goto(mesh.dashboard_url)
    box = page.get_by_label("Token")
    expect(box).to_be_visible(timeout=15_000)
    box.fill(mesh.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".overview .tile").first).to_be_visible(timeout=15_000)
    expect(page.locator(".account")).to_contain_text("signed in as local: submit, read, cancel")
    page.goto(mesh.dashboard_url + "dashboard.html")  # kept for the session: no second sign-in
    expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
    page.get_by_role("button", name="sign out").click()
    expect(page.get_by_label("Token")).to_be_visible(timeout=5_000)
    assert page.problems == []
    page.close()


def test_the_link_make_run_prints_signs_in_and_leaves_no_token_in_the_address(mesh, browser):
    page = fresh_page(browser)
    page.goto(mesh.signed_in_url("dashboard.html"))
    expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
    assert "token" not in page.url
    assert page.problems == []
    page.close()


def test_a_read_only_token_watches_but_cannot_submit_or_cancel(mesh, browser, ingest):
    reader = auth.ensure_keys(auth.auth_dir(mesh.settings.run_dir)).token(["read"], subject="viewer")
    page = fresh_page(browser, reader)
    page.goto(mesh.dashboard_url + "#/submit")
    expect(page.locator(".account")).to_contain_text("signed in as viewer: read", timeout=15_000)
    page.get_by_label("values").fill(", ".join(str(v) for v in series(64)))
    page.get_by_role("button", name="submit").click()
    expect(page.get_by_role("alert")).to_contain_text("PERMISSION_DENIED", timeout=15_000)
    expect(page.locator('[data-testid="job-detail"]')).to_have_count(0)
    with paused(mesh, "worker"):  # a job that stays cancellable while the page tries
        job_id = submit(ingest, series(64), models=MODELS[:1])[0]
        page.goto(mesh.dashboard_url + f"#/jobs/{job_id}")
        page.get_by_role("button", name="cancel").click()
        expect(page.get_by_role("alert")).to_contain_text("PERMISSION_DENIED", timeout=15_000)
    with clients_of(mesh) as (_, orchestrator):
        assert orchestrator.GetJob(opb.GetJobRequest(job_id=job_id), timeout=10).job.state != js.JOB_STATE_CANCELLED
    assert page.problems == []
    page.close()


def test_an_expired_token_brings_back_the_sign_in_view(mesh, browser):
    expired = auth.ensure_keys(auth.auth_dir(mesh.settings.run_dir)).token(auth.SCOPES, ttl_s=-30)
    page = fresh_page(browser, expired)
    page.goto(mesh.dashboard_url)
    expect(page.get_by_text("The token was refused")).to_be_visible(timeout=15_000)
    expect(page.get_by_label("Token")).to_be_visible()
    assert page.problems == []
    page.close()

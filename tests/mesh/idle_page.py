"""A dashboard page whose feed stream stays idle for a while: run by the ``idle_page`` fixture
(tests/mesh/conftest.py) as a process of its own, so the wait overlaps the rest of the suite.

    python tests/mesh/idle_page.py DASHBOARD_URL IDLE_SECONDS

Prints one JSON line once the feed is live, one after the idle wait (every change of the feed's
badge meanwhile: none means the stream was never cut), then reads a job id from stdin and
prints whether its row reached the feed within 2 s, with the page's console errors.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import expect, sync_playwright

from tools.bench import dashboard as bench_dashboard
from tools.display import short_id

OBSERVE_BADGE = """() => { window.__badges = [];
    new MutationObserver(() => window.__badges.push(document.querySelector('.feed .badge').textContent))
      .observe(document.querySelector('.feed .badge'), { childList: true, characterData: true, subtree: true }); }"""


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main(url: str, idle_s: float) -> None:
    with sync_playwright() as pw:
        browser = bench_dashboard.launch(pw)
        page = browser.new_page(viewport=bench_dashboard.VIEWPORT)
        problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
        page.goto(url)  # dashboard.html, signed in by its #token= link
        expect(page.locator(".feed .badge")).to_have_text("live", timeout=15_000)
        page.evaluate(OBSERVE_BADGE)
        say(live=True)
        page.wait_for_timeout(idle_s * 1000)
        say(badges=page.evaluate("() => window.__badges"))
        job_id = sys.stdin.readline().strip()
        row = page.locator('tr[data-testid="feed-row"]', has=page.locator(f'a.mono:text-is("{short_id(job_id)}")'))
        try:
            expect(row).to_be_visible(timeout=2_000)
            shown = True
        except AssertionError:
            shown = False
        say(shown=shown, problems=problems)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))

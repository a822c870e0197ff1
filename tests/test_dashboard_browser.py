"""The dashboard in a real browser: Debian's Chromium driven by Playwright (never `playwright install`) against the
app served by uvicorn on 127.0.0.1. The overview's curve and the lineage tree render, clicking a node opens its
trial with its diff, a motivation holding `<script>` is shown as text and never runs, a trial added to the record
appears without a reload, and a screenshot is saved in the test's temp folder."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMIUM, FLAGS, WAIT_MS, browser_or_skip
from dashboard_run import HOSTILE_MOTIVATION, HOSTILE_NAME, TRIALS, add_plain_trial, make_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The dashboard over a fresh offline run, served by uvicorn in a background thread: (page URL, run folder)."""
    pytest.importorskip("uvicorn", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")
    from evoforge.dashboard import resolve_sources
    from evoforge.dashboard.server import make_server

    run_dir = make_run(tmp_path_factory.mktemp("dash-browser"))
    port = _free_port()
    server, _, _ = make_server(resolve_sources([run_dir]), port=port, poll_s=0.2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:  # bounded wait for start-up
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/", run_dir
    server.should_exit = True
    thread.join(timeout=30)


def test_the_dashboard_in_a_real_browser(served: tuple[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    sync_playwright = browser_or_skip()
    url, run_dir = served
    hostile_id = TRIALS + 1
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            # The page's CSP would stop an injected inline script on its own; bypassing it here shows that the
            # escaping (text nodes only) is what keeps `<script>` from running.
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))

            # Overview: every trial a dot of the score curve, the best-so-far line drawn.
            page.goto(url)
            points = page.locator("#plot-score-trials .scatterlayer .point")
            points.nth(TRIALS).wait_for()  # TRIALS + 1 trials: the hostile one sits on the floor line
            assert points.count() == TRIALS + 1
            assert page.locator("#plot-score-trials .scatterlayer .js-line").count() >= 1
            screenshot = tmp_path / "dashboard-overview.png"
            page.screenshot(path=str(screenshot), full_page=True)
            with capsys.disabled():  # in the test output even when pytest captures it
                print(f"\ndashboard screenshot: {screenshot}")

            # Lineage: one node per trial; click the best trial's node and its page opens with the diff.
            page.goto(url + "#/0/lineage")
            nodes = page.locator("#plot-lineage .scatterlayer .point")
            nodes.nth(TRIALS).wait_for()
            assert nodes.count() == TRIALS + 1
            target = page.evaluate(_FIND_BEST_NODE)
            box = page.locator("#plot-lineage .scatterlayer .trace").nth(target["trace"]).locator(
                ".point").nth(target["index"]).bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function(f"location.hash === '#/0/trial/{target['id']}'")
            page.locator("#diff .line.add").first.wait_for()
            assert page.locator("#diff .line.add").count() >= 1 and page.locator("#diff .line.del").count() >= 1
            page.locator(".curve .scatterlayer .js-line").first.wait_for()  # telemetry curves drawn
            page.screenshot(path=str(tmp_path / "dashboard-trial.png"), full_page=True)

            # The hostile trial: every text shown as text, no script ran.
            page.goto(url + f"#/0/trial/{hostile_id}")
            page.locator("#motivation").wait_for()
            page.wait_for_function("document.getElementById('motivation').textContent.includes('pwned')")
            assert page.locator("#motivation").text_content() == HOSTILE_MOTIVATION
            assert HOSTILE_NAME in (page.locator("#trial-title").text_content() or "")
            assert page.locator("#main script, #main img").count() == 0
            page.goto(url + "#/0/lineage")  # names also go into the tree's hover labels
            nodes.nth(TRIALS).wait_for()
            page.goto(url + "#/0/overview")
            points.nth(TRIALS).wait_for()
            assert page.evaluate("typeof window.pwned") == "undefined"

            # Live: a trial the loop records now appears on the open overview, no reload.
            new_id = add_plain_trial(run_dir, "added while the page is open")
            points.nth(TRIALS + 1).wait_for()
            assert page.evaluate("EF.overviewData.trials.map(t => t.id)")[-1] == new_id

            # The other views render without an error.
            for view, ready in (("knowledge", "#kb-items .item"), ("space", "#plot-grid .heatmaplayer"),
                                ("compare", "#plot-compare .scatterlayer .js-line")):
                page.goto(url + f"#/0/{view}")
                page.locator(ready).first.wait_for()
            assert errors == [] and external == []
            assert page.evaluate("typeof window.pwned") == "undefined"
        finally:
            browser.close()


# The lineage plot's data: which trace and which point in it is the best trial's node.
_FIND_BEST_NODE = """() => {
  const plot = document.getElementById('plot-lineage');
  const best = EF.lineageData.best_trial;
  const markers = plot.data.map((t, i) => [t, i]).filter(([t]) => t.mode === 'markers');
  for (const [t, i] of markers) {
    const index = t.customdata.indexOf(best);
    if (index >= 0) return { trace: i, index, id: best };
  }
  return null;
}"""

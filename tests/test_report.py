"""`evoforge report`, `eval` and `noise` as a user runs them (real subprocesses) on the record of a real offline run:
every section of the report is there, LLM and candidate text is escaped, the reproduce command gives the champion's
score again, and the noise of an evaluator with known noise is measured."""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from taskfactory import make_task

CLI = [sys.executable, "-m", "evoforge.cli"]
SECTIONS = {"problem", "outcome", "scores", "lineage", "lessons", "failures", "cost", "reproduce"}
NOISY_EVALUATOR = """import random, runpy
def evaluate(program_path, ctx):
    x = runpy.run_path(program_path)["x"]
    return {"score": -(x - 3.0) ** 2 + random.Random(ctx["seed"]).gauss(0.0, 0.5)}
"""


def evoforge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


class _Page(HTMLParser):
    """Section ids, the number of inline SVG figures, table rows per section, <pre> texts and any <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.svgs = 0
        self.rows: dict[str, int] = {}
        self.pre: list[str] = []
        self.scripts = 0
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        elif tag == "svg":
            self.svgs += 1
        elif tag == "tr" and self.sections:
            self.rows[self.sections[-1]] = self.rows.get(self.sections[-1], 0) + 1
        elif tag == "pre":
            self._in_pre = True
            self.pre.append("")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre[-1] += data


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    task = make_task(root / "task")
    run_dir = root / "run"
    evoforge("run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", "8", "--concurrency", "1",
             "--seed", "5")
    return task, run_dir


def _chain(run_dir: Path, champion: int) -> list[int]:
    rows = [json.loads(line) for line in evoforge("export", str(run_dir)).stdout.splitlines()]
    parents = {row["id"]: (row["parent_ids"] or [None])[0] for row in rows}
    chain, current = [], champion
    while current is not None and len(chain) <= len(rows):
        chain.append(current)
        current = parents[current]
    return chain


def test_the_report_has_every_section_and_the_champions_lineage(offline_run: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    _, run_dir = offline_run
    out = evoforge("report", str(run_dir), "--out", str(tmp_path / "r.html")).stdout
    assert str(tmp_path / "r.html") in out
    page = _Page()
    page.feed((tmp_path / "r.html").read_text())
    assert set(page.sections) == SECTIONS and page.svgs == 2 and page.scripts == 0
    best = json.loads(evoforge("best", str(run_dir), "--json").stdout)
    chain = _chain(run_dir, best["id"])
    assert page.rows["lineage"] == len(chain) + 1  # a header row, then the seed … the champion
    markdown = (tmp_path / "r.md").read_text()
    for heading in ("## Problem", "## The champion's lineage", "## Top lessons", "## Cost per model and role",
                    "## Reproduce the champion's evaluation"):
        assert heading in markdown
    assert f"| #{best['id']} |" in markdown and "Choose x to maximise" in markdown
    assert (tmp_path / "r.champion.py").read_text() == best["code"]


def test_the_reproduce_command_gives_the_champions_score(offline_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = offline_run
    evoforge("report", str(run_dir), "--out", str(tmp_path / "r.html"))
    page = _Page()
    page.feed((tmp_path / "r.html").read_text())
    command = page.pre[-1].strip()
    assert command.startswith("evoforge eval ")
    args = command.split()[1:]
    args[args.index("--repeats") + 1] = "2"  # two repeats are enough for a deterministic evaluator
    result = json.loads(evoforge(*args, "--json").stdout)
    best = json.loads(evoforge("best", str(run_dir), "--json").stdout)
    assert result["k"] == 2 and result["failed"] == 0
    assert result["mean"] == pytest.approx(best["score"], abs=1e-9) and result["sd"] == pytest.approx(0.0, abs=1e-12)


def test_text_from_a_model_or_candidate_is_escaped(offline_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = offline_run
    best = json.loads(evoforge("best", str(run_dir), "--json").stdout)
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    hostile = "<script>window.pwned=1</script> | <img src=x onerror=alert(1)>"
    with sqlite3.connect(copy / "record.db") as db:
        db.execute("UPDATE trials SET motivation = ?, name = ? WHERE id = ?", (hostile, hostile, best["id"]))
    evoforge("report", str(copy))
    html = (copy / "report.html").read_text()
    page = _Page()
    page.feed(html)
    assert page.scripts == 0 and "<img" not in html and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    markdown = (copy / "report.md").read_text()
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown and "\\|" in markdown


def test_noise_of_an_evaluator_with_known_noise(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    (task / "evaluator.py").write_text(NOISY_EVALUATOR)
    result = json.loads(evoforge("noise", str(task), "--k", "6", "--json").stdout)
    seed_score = -(1.0 - 3.0) ** 2  # the knob program's x is 1.0
    expected = [seed_score + random.Random(seed).gauss(0.0, 0.5) for seed in range(6)]
    assert result["scores"] == pytest.approx(expected)  # each repeat got its own seed, 0 … k−1
    assert result["sd"] == pytest.approx(statistics.stdev(expected))
    assert result["stderr"] == pytest.approx(statistics.stdev(expected) / 6 ** 0.5)


def test_noise_is_compared_with_a_past_runs_improvements(offline_run: tuple[Path, Path], tmp_path: Path) -> None:
    task, run_dir = offline_run
    noisy = make_task(tmp_path / "task")
    (noisy / "evaluator.py").write_text(NOISY_EVALUATOR.replace("0.5)", "50.0)"))
    out = evoforge("noise", str(noisy), "--k", "3", "--run", str(run_dir)).stdout
    assert "warning: the noise" in out
    quiet = evoforge("noise", str(task), "--k", "2", "--run", str(run_dir), "--json").stdout
    data = json.loads(quiet)
    assert data["sd"] == 0.0 and data["noise_exceeds_typical"] is False and data["typical_improvement"] > 0


def test_bad_input_gets_one_line(tmp_path: Path, offline_run: tuple[Path, Path]) -> None:
    task, _ = offline_run
    missing = evoforge("eval", str(task), str(tmp_path / "nope.py"), check=False)
    assert missing.returncode == 2 and "cannot read the program" in missing.stderr
    few = evoforge("noise", str(task), "--k", "1", check=False)
    assert few.returncode == 2 and "--k 1" in few.stderr
    not_a_run = evoforge("report", str(tmp_path), check=False)
    assert not_a_run.returncode == 2 and "error" in not_a_run.stderr


def test_the_report_renders_in_a_real_browser_without_errors(offline_run: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from browser import CHROMIUM, FLAGS, WAIT_MS, browser_or_skip

    sync_playwright = browser_or_skip()
    _, run_dir = offline_run
    evoforge("report", str(run_dir), "--out", str(tmp_path / "r.html"))
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((tmp_path / "r.html").as_uri(), wait_until="load", timeout=WAIT_MS)
            sizes = page.eval_on_selector_all(".figure svg", "els => els.map(e => e.getBoundingClientRect().height)")
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")
    assert errors == [] and len(sizes) == 2 and all(h > 100 for h in sizes)
    assert set(sections) == SECTIONS and shot.stat().st_size > 10_000
    assert all(url.startswith("file://") for url in requests)  # nothing fetched from a network

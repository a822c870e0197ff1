"""What `show`, `status`, `best` and `export` tell: each thing once, tables where the data is tabular, why an analysis
failed, the seed's score and the gain over it, and one CSV column per metric."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from recordfactory import ANALYSIS_ERROR, make_record

from evoforge.models import Direction, Trial, TrialStatus

CLI = [sys.executable, "-m", "evoforge"]
DIGEST = "scored 2.5 (+1.5 over parent #1); x=2.5"


def evoforge(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_record(tmp_path_factory.mktemp("views") / "run")


def _row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first` (box characters stripped)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def test_show_tells_each_thing_once_with_tables_and_the_analysis_error(run_dir: Path) -> None:
    shown = evoforge("show", str(run_dir), "2")
    assert shown.count(DIGEST) == 1  # not again as "analysis: digest" and "analysis: analysis"
    assert f"analysis failed: {ANALYSIS_ERROR}" in shown
    assert "{'loss'" not in shown and "{'role'" not in shown and "LLM call: {" not in shown  # no Python dicts
    assert _row(shown, "loss")[:2] == ["loss", "0.25"] and _row(shown, "x")[:2] == ["x", "2.5"]
    assert _row(shown, "researcher")[:4] == ["researcher", "fake-model", "1200", "340"]
    assert _row(shown, "analyzer")[-1] == ANALYSIS_ERROR
    data = json.loads(evoforge("show", str(run_dir), "2", "--json"))
    assert [(a["kind"], a["error"]) for a in data["analyses"]] == [("digest", None), ("analysis", ANALYSIS_ERROR)]


def test_status_and_best_show_the_seed_and_the_gain(run_dir: Path) -> None:
    status = json.loads(evoforge("status", str(run_dir), "--json"))
    assert (status["seed_score"], status["seed_trial"], status["gain"], status["gain_pct"]) == (1.0, 1, 1.5, 150.0)
    assert _row(evoforge("status", str(run_dir)), "seed score")[1] == \
        "1 (trial #1); the best is +1.5 better, +150.0%"
    best = json.loads(evoforge("best", str(run_dir), "--json"))
    assert (best["id"], best["seed_score"], best["gain"]) == (2, 1.0, 1.5)
    assert "seed: 1 (trial #1); the best is +1.5 better, +150.0%" in evoforge("best", str(run_dir)).splitlines()


def test_the_gain_follows_the_direction() -> None:
    from evoforge.views import seed_and_gain

    seed = Trial(id=1, status=TrialStatus.SUCCEEDED, score=4.0)
    best = Trial(id=7, status=TrialStatus.SUCCEEDED, parent_ids=(1,), score=3.0)
    assert seed_and_gain(seed, best, Direction.MINIMIZE) == {"seed_score": 4.0, "seed_trial": 1, "gain": 1.0,
                                                            "gain_pct": 25.0}
    failed_seed = Trial(id=1, status=TrialStatus.FAILED)
    assert seed_and_gain(failed_seed, best, Direction.MINIMIZE)["gain"] is None


def test_csv_export_has_one_column_per_metric_and_reuse_and_suspect(run_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(evoforge("export", str(run_dir), "--format", "csv"))))
    assert [r["metric:x"] for r in rows] == ["1.0", "2.5", "", "3.0", "2.5"]
    assert [r["metric:loss"] for r in rows] == ["0.5", "0.25", "", "", "0.25"]
    assert [r["suspect"] for r in rows] == ["False", "False", "False", "True", "False"]
    assert [r["reused_from"] for r in rows] == ["", "", "", "", "2"]
    assert "metrics" not in rows[0]

"""The command line as a user runs it (real subprocesses): run, status, best, show, export, init and its errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from taskfactory import make_task

CLI = [sys.executable, "-m", "evoforge.cli"]


def evoforge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    task = make_task(root / "task")
    run_dir = root / "run"
    out = evoforge("run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", "8",
                   "--concurrency", "2", "--seed", "3")
    assert "offline" in out.stdout and "best score" in out.stdout
    return run_dir


def test_status_json_counts_each_status(finished_run: Path) -> None:
    status = json.loads(evoforge("status", str(finished_run), "--json").stdout)
    assert status["succeeded"] + status["failed"] + status["pruned"] == 8
    assert status["running"] == 0 and status["proposed"] == 0
    assert status["best_score"] > -4.0  # the seed scores -4.0: a proposal improved on it
    table = evoforge("status", str(finished_run)).stdout
    assert "succeeded" in table and "best score" in table


def test_best_and_show(finished_run: Path) -> None:
    best = json.loads(evoforge("best", str(finished_run), "--json").stdout)
    status = json.loads(evoforge("status", str(finished_run), "--json").stdout)
    assert best["score"] == status["best_score"]
    code = evoforge("best", str(finished_run), "--code").stdout
    assert code.strip() == best["code"].strip() and "x =" in code
    shown = json.loads(evoforge("show", str(finished_run), "2", "--json").stdout)
    assert shown["id"] == 2 and shown["parent_ids"] == [1] and shown["proposer"] == "offline"
    assert "diff" in shown and shown["digest"]
    assert "trial #2" in evoforge("show", str(finished_run), "2").stdout


def test_export_jsonl_and_csv(finished_run: Path) -> None:
    lines = evoforge("export", str(finished_run), "--format", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == list(range(1, 9))
    for key in ("id", "parent_ids", "status", "score", "metrics", "name", "created_at"):
        assert all(key in r for r in rows)
    table = list(csv.DictReader(io.StringIO(evoforge("export", str(finished_run), "--format", "csv").stdout)))
    assert len(table) == 8 and table[0]["status"] == "succeeded"


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    (task / "task.yaml").write_text((task / "task.yaml").read_text() + "tmeout: 5\n")
    bad = evoforge("run", str(task), "--llm", "offline", check=False)
    assert bad.returncode == 2
    assert "task.yaml" in bad.stderr and "tmeout" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = evoforge("status", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "record" in missing.stderr


def test_init_writes_a_task_that_runs(tmp_path: Path) -> None:
    evoforge("init", str(tmp_path / "mytask"))
    assert (tmp_path / "mytask" / "task.yaml").exists()
    evoforge("run", str(tmp_path / "mytask"), "--run-dir", str(tmp_path / "run"), "--llm", "offline", "--trials", "3")
    status = json.loads(evoforge("status", str(tmp_path / "run"), "--json").stdout)
    assert status["succeeded"] == 3  # the seed and both proposals, not the seed alone
    again = evoforge("init", str(tmp_path / "mytask"), check=False)
    assert again.returncode == 2

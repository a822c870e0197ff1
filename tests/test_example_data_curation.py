"""The data_curation example: the evaluator scores the seed (and it keeps cleaner data than no filter), a broken
candidate is rejected at the smoke stage with the reason, the selections are checked strictly, and a 3-trial
offline run completes. Small settings throughout (the README gives the real ones)."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_module

from evoforge.experiment.engineer import Engineer
from evoforge.models import TrialStatus
from evoforge.task.loader import load_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data_curation"
SMALL = {"n_clean": 60, "budget": 20000, "steps": 5, "probe_items": 10, "eval_bytes": 3000, "eval_every": 0}
SMALL_TASK = f"""\
name: data_curation_small
problem: problem.md
program: curate.py
evaluator: evaluator.py
hidden: [corpus.py]
objective: {{metric: val_bpb, direction: minimize}}
timeout_s: 300
stages:
  - {{name: smoke, timeout_s: 300, args: {json.dumps(SMALL)}, promote: {{min_score: 8.0}}}}
  - {{name: short, timeout_s: 300, args: {{n_clean: 80, budget: 30000, steps: 15, probe_items: 10,
                                          eval_bytes: 3000, eval_every: 5}}}}
"""
NO_FILTER = "def curate(docs, budget):\n    kept, used = [], 0\n    for i, d in enumerate(docs):\n" \
            "        n = len(d.encode())\n        if used + n <= budget:\n            kept.append(i)\n" \
            "            used += n\n    return kept\n"


def load(name: str) -> ModuleType:
    return load_module(EXAMPLE / f"{name}.py", f"test_data_curation_{name}")


@pytest.fixture(scope="module")
def evaluator() -> ModuleType:
    return load("evaluator")


@pytest.fixture()
def small_task(tmp_path: Path) -> Path:
    task = tmp_path / "task"
    shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("__pycache__"))
    (task / "task.yaml").write_text(SMALL_TASK)
    return task


def test_evaluator_scores_the_seed_and_it_keeps_cleaner_data_than_no_filter(evaluator: ModuleType,
                                                                             tmp_path: Path) -> None:
    ctx = {"trial_dir": str(tmp_path), "stage": "smoke", "stage_args": SMALL}
    seed = evaluator.evaluate(str(EXAMPLE / "curate.py"), ctx)
    assert 0 < seed["val_bpb"] < 8.0 and math.isfinite(seed["val_bpb"])
    assert 0.0 <= seed["probe_acc"] <= 1.0 and seed["steps"] == SMALL["steps"]
    assert 0 < seed["kept_bytes"] <= SMALL["budget"]
    baseline_path = tmp_path / "no_filter.py"
    baseline_path.write_text(NO_FILTER)
    baseline = evaluator.evaluate(str(baseline_path), {**ctx, "stage_args": {**SMALL, "steps": 0}})
    assert seed["kept_clean_share"] > baseline["kept_clean_share"] + 0.2


@pytest.mark.parametrize(("selections", "reason"), [
    ([], "kept nothing"),
    ([0, 0], "selected twice"),
    ([10_000], "is not an integer in"),
    ([[1, 0.0]], "weight"),
    ([[1, 1.0, 5, 2]], "span"),
    ([[1, "a"]], "expected index"),
    ("nope", "kept nothing"),
])
def test_check_names_the_bad_selection(evaluator: ModuleType, selections: object, reason: str) -> None:
    docs, kinds = ["hello world " * 10] * 5, ["clean"] * 5
    with pytest.raises(evaluator.Rejected, match=reason):
        evaluator.check(selections, docs, kinds, 10_000)


def test_check_counts_spans_and_weights_against_the_budget(evaluator: ModuleType) -> None:
    docs, kinds = ["hello world " * 10] * 5, ["clean"] * 5
    with pytest.raises(evaluator.Rejected, match="over budget: the selections hold 240 bytes, the budget is 100"):
        evaluator.check([0, [1, 2.0]], docs, kinds, 100)
    texts, weights, _ = evaluator.check([0, [1, 2.0], [2, 1.0, 6, 11]], docs, kinds, 10_000)
    assert texts[2] == b"world" and weights == [1.0, 2.0, 1.0]


@pytest.mark.parametrize(("program", "reason"), [
    ("def curate(docs, budget):\n    raise ValueError('no docs today')\n",
     "curate() failed: exit:1: ValueError: no docs today"),
    ("def curate(docs, budget):\n    return list(range(len(docs)))\n", "over budget: the selections hold"),
])
def test_broken_candidate_is_rejected_at_smoke_with_the_reason(small_task: Path, tmp_path: Path, program: str,
                                                               reason: str) -> None:
    task = load_task(small_task)
    outcome = asyncio.run(Engineer(task).evaluate(program, tmp_path / "trial"))
    assert outcome.status is TrialStatus.FAILED and [s.name for s in outcome.stages] == ["smoke"]
    assert reason in (outcome.error_message or ""), outcome.error_message


def test_three_trial_offline_run_completes(small_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cli = [sys.executable, "-m", "evoforge.cli"]
    proc = subprocess.run([*cli, "run", str(small_task), "--run-dir", str(run_dir), "--llm", "offline", "--trials",
                           "3", "--concurrency", "2", "--seed", "1"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(subprocess.run([*cli, "status", str(run_dir), "--json"], capture_output=True, text=True,
                                       timeout=120, check=True).stdout)
    assert status["succeeded"] + status["failed"] + status["pruned"] == 3 and status["succeeded"] >= 1
    assert 0 < status["best_score"] < 8.0


def test_seed_selection_is_the_same_in_every_process() -> None:
    """The seed's de-duplication must not depend on Python's per-process string hash salt (it did: hash())."""
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import corpus, curate; "
              "c = corpus.build(5, n_clean=150); print(json.dumps(curate.curate(c.docs, 60000)))")
    outputs = {subprocess.run([sys.executable, "-c", script, str(EXAMPLE)], capture_output=True, text=True,
                              timeout=120, check=True, env={"PYTHONHASHSEED": salt}).stdout
               for salt in ("1", "2", "3")}
    assert len(outputs) == 1 and json.loads(outputs.pop())

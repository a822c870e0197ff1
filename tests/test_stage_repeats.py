"""Repeats: a stage (or a task without stages) asks for k evaluations, each with its own seed; the score is their
mean, every repeat's score and the standard error are kept in the metrics, and a failing repeat fails the stage."""

from __future__ import annotations

import asyncio
import random
import statistics
from pathlib import Path

from helpers import evaluator_task

from evoforge.config import StageConfig
from evoforge.experiment import Engineer
from evoforge.models import TrialStatus

NOISY = """
import random, runpy

def evaluate(program_path, ctx):
    print("seed", ctx["seed"])
    if ctx["seed"] == runpy.run_path(program_path).get("FAIL_AT"):
        raise RuntimeError(f"seed {ctx['seed']} broke it")
    return {"score": 1.0 + random.Random(ctx["seed"]).gauss(0.0, 0.5), "stage": ctx["stage"]}
"""
PROGRAM = "FAIL_AT = None\n"


def _expected(seeds: range) -> list[float]:
    return [1.0 + random.Random(seed).gauss(0.0, 0.5) for seed in seeds]


def test_a_task_without_stages_repeats_its_evaluation(tmp_path: Path) -> None:
    task = evaluator_task(tmp_path, evaluator=NOISY, repeats=4)
    outcome = asyncio.run(Engineer(task).evaluate(PROGRAM, tmp_path / "trial"))
    expected = _expected(range(4))
    assert outcome.status is TrialStatus.SUCCEEDED
    assert outcome.score == statistics.fmean(expected) and outcome.metrics["score"] == outcome.score
    assert outcome.metrics["score_repeats"] == expected
    assert outcome.metrics["score_stderr"] == statistics.stdev(expected) / 2.0
    logs = {p.name: p.read_text() for p in (tmp_path / "trial").iterdir() if p.suffix == ".log"}
    assert [logs.get(name) for name in ("stdout.log", "stdout.r1.log", "stdout.r3.log")] == \
        ["seed 0\n", "seed 1\n", "seed 3\n"]  # each repeat's output in a log of its own


def test_each_stage_has_its_own_repeats_and_a_later_evaluation_other_seeds(tmp_path: Path) -> None:
    stages = [StageConfig(name="smoke", timeout_s=30), StageConfig(name="full", timeout_s=30, repeats=3)]
    task = evaluator_task(tmp_path, evaluator=NOISY, stages=stages)
    assert task.config.seeded and task.config.champion_repeats == 3  # repeats make a task seeded
    first = asyncio.run(Engineer(task).evaluate(PROGRAM, tmp_path / "first"))
    assert first.stages[0].score == _expected(range(0, 1))[0]  # smoke: one evaluation, seed 0
    assert first.score == statistics.fmean(_expected(range(0, 3)))
    again = asyncio.run(Engineer(task).evaluate(PROGRAM, tmp_path / "again", seed=1))  # a champion's re-evaluation
    assert again.metrics["score_repeats"] == _expected(range(3, 6))


def test_a_failing_repeat_fails_the_stage_and_says_which(tmp_path: Path) -> None:
    task = evaluator_task(tmp_path, evaluator=NOISY, repeats=3)
    outcome = asyncio.run(Engineer(task).evaluate("FAIL_AT = 2\n", tmp_path / "trial"))
    assert outcome.status is TrialStatus.FAILED and outcome.score is None
    assert (outcome.error_message or "").startswith("repeat 3 of 3: RuntimeError: seed 2 broke it")


def test_the_standard_error_is_shown_beside_the_score(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from taskfactory import make_task

    task = make_task(tmp_path / "task")
    (task / "evaluator.py").write_text("import random, runpy\ndef evaluate(program_path, ctx):\n"
                                       "    x = runpy.run_path(program_path)['x']\n"
                                       "    noise = random.Random(ctx['seed']).gauss(0, 0.1)\n"
                                       "    return {'score': -(x - 3.0) ** 2 + noise}\n")
    (task / "task.yaml").write_text((task / "task.yaml").read_text() + "repeats: 2\n")
    cli = [sys.executable, "-m", "evoforge.cli"]
    subprocess.run([*cli, "run", str(task), "--run-dir", str(tmp_path / "run"), "--llm", "offline", "--trials", "3",
                    "--concurrency", "1"], check=True, capture_output=True)
    status = json.loads(subprocess.run([*cli, "status", str(tmp_path / "run"), "--json"], check=True,
                                       capture_output=True, text=True).stdout)
    assert status["best_stderr"] > 0
    best = json.loads(subprocess.run([*cli, "best", str(tmp_path / "run"), "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    assert len(best["metrics"]["score_repeats"]) == 2 and best["champion"]["evaluations"] == 3

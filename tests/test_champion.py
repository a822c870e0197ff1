"""Champions: a new best is evaluated again with other seeds before it takes the title, and takes it only when it
beats the champion by more than the noise — a lucky outlier is not crowned, a suspect trial is evaluated again."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from taskfactory import make_task

import evoforge
from evoforge.champion import Crowning, beats, mean_and_stderr
from evoforge.config import RunSettings
from evoforge.experiment import Engineer
from evoforge.memory.champion_log import ChampionDecision
from evoforge.memory.record import Record
from evoforge.models import Direction, TrialStatus
from evoforge.task.loader import load_task

# the knob task's score plus a little noise drawn from the seed the evaluator is given
SEEDED_EVALUATOR = """import random, runpy
def evaluate(program_path, ctx):
    x = runpy.run_path(program_path)["x"]
    return {"score": -(x - 3.0) ** 2 + random.Random(ctx["seed"]).gauss(0.0, 0.01)}
"""


def _seeded_task(root: Path) -> Path:
    task = make_task(root)
    (task / "evaluator.py").write_text(SEEDED_EVALUATOR)
    (task / "task.yaml").write_text((task / "task.yaml").read_text() + "champion: {seeded: true}\n")
    return task


def test_the_rule_needs_more_than_the_noise() -> None:
    holder = ChampionDecision(1, mean=1.0, stderr=0.1, evaluations=3, crowned=True, reason="")
    assert mean_and_stderr([2.0]) == (2.0, 0.0)
    assert mean_and_stderr([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert beats(Direction.MAXIMIZE, 1.25, 0.1, holder)  # 1.15 > 1.1
    assert not beats(Direction.MAXIMIZE, 1.15, 0.1, holder)  # the intervals overlap
    assert beats(Direction.MINIMIZE, 0.75, 0.1, holder) and not beats(Direction.MINIMIZE, 0.85, 0.1, holder)
    single = ChampionDecision(1, mean=1.0, stderr=0.0, evaluations=1, crowned=True, reason="")
    assert beats(Direction.MAXIMIZE, 1.0001, 0.0, single) and not beats(Direction.MAXIMIZE, 1.0, 0.0, single)


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("champion")
    task = _seeded_task(root / "task")
    run_dir = root / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=8, concurrency=1, llm="offline", seed=2))
    return task, run_dir


def test_a_seeded_run_crowns_champions_on_three_evaluations(seeded_run: tuple[Path, Path]) -> None:
    _, run_dir = seeded_run
    with Record.for_run_dir(run_dir) as record:
        decisions = record.champion_decisions()
        champion = record.champion()
        first = record.trials(limit=1)[0]
    assert decisions[0].trial_id == first.id and decisions[0].crowned  # the seed is the first champion
    assert champion is not None and all(d.evaluations == 3 for d in decisions)
    best = json.loads(subprocess.run([sys.executable, "-m", "evoforge.cli", "best", str(run_dir), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert best["id"] == champion.trial_id and best["champion"]["evaluations"] == 3
    assert best["champion"]["mean"] == pytest.approx(champion.mean) and best["champion"]["stderr"] > 0


def test_a_lucky_outlier_is_not_crowned(seeded_run: tuple[Path, Path]) -> None:
    task_dir, run_dir = seeded_run
    task = load_task(task_dir)
    with Record.for_run_dir(run_dir) as record:
        holder = record.champion()
        assert holder is not None
        trial = record.trial(holder.trial_id)
        lucky = dataclasses.replace(trial, id=trial.id, score=(holder.mean or 0.0) + 50.0)  # one lucky evaluation
        crowning = Crowning(task, record, Engineer(task), run_dir)
        decision = asyncio.run(crowning.consider(lucky))
        assert decision is not None and not decision.crowned and "within the noise" in decision.reason
        assert decision.evaluations == 3 and record.champion() == holder  # evaluated again, title kept
        assert crowning.holder == holder


def test_a_suspect_trial_is_evaluated_again(tmp_path: Path) -> None:
    task_dir = make_task(tmp_path / "task")  # deterministic, unseeded: one evaluation makes a champion ...
    run_dir = tmp_path / "run"
    evoforge.run(task_dir, run_dir=run_dir, settings=RunSettings(trials=3, concurrency=1, llm="offline"))
    task = load_task(task_dir)
    with Record.for_run_dir(run_dir) as record:
        assert all(d.evaluations == 1 for d in record.champion_decisions())
        holder = record.champion()
        assert holder is not None
        trial = record.trial(holder.trial_id)
        suspect = dataclasses.replace(trial, score=(holder.mean or 0.0) + 1.0, suspect=True)
        decision = asyncio.run(Crowning(task, record, Engineer(task), run_dir).consider(suspect))
        # ... but a suspect one is evaluated again: the program really scores the holder's mean, not + 1.0
        assert decision is not None and decision.evaluations == 2 and not decision.crowned
        assert decision.mean == pytest.approx((holder.mean or 0.0) + 0.5)


def test_a_trial_that_does_not_beat_the_champion_costs_nothing(seeded_run: tuple[Path, Path]) -> None:
    task_dir, run_dir = seeded_run
    task = load_task(task_dir)
    with Record.for_run_dir(run_dir) as record:
        holder = record.champion()
        assert holder is not None
        worse = dataclasses.replace(record.trial(holder.trial_id), score=(holder.mean or 0.0) - 1.0)
        failed = dataclasses.replace(worse, status=TrialStatus.FAILED, score=None)
        crowning = Crowning(task, record, Engineer(task), run_dir)
        before = len(record.champion_decisions())
        assert asyncio.run(crowning.consider(worse)) is None and asyncio.run(crowning.consider(failed)) is None
        assert len(record.champion_decisions()) == before

"""The stopping rule of a run: stored once in the record, read back on every resume, changed only in ways that make
sense (`--trials N` is the new total, `--more N` is N more); the task's `target_score` is honoured."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from taskfactory import make_task
from typer.testing import CliRunner

import evoforge
from evoforge.cli import app
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.memory.record import Record
from evoforge.models import Trial
from evoforge.observer import Observer


class InterruptAt(Observer):
    """Presses Ctrl-C (SIGINT to this process, once, as a person does) once `n` trials are finished."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pressed = False

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        if trial.id >= self.n and not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)


def _total(run_dir: Path) -> int:
    with Record.for_run_dir(run_dir) as record:
        return sum(record.counts().values())


def _rule(run_dir: Path) -> dict:
    with Record.for_run_dir(run_dir) as record:
        return record.run_info().stopping


def test_a_changed_rule_is_read_back_by_the_next_plain_resume(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=4, concurrency=1, llm="offline"))
    assert _total(run_dir) == 4
    interrupted = evoforge.resume(run_dir, trials=10, observer=InterruptAt(6))  # stopped on its way to 10
    assert interrupted.interrupted and _total(run_dir) < 10
    assert _rule(run_dir)["trials"] == 10
    evoforge.resume(run_dir)  # no option: the rule the record keeps, not the one the run started with
    assert _total(run_dir) == 10


def test_more_adds_trials_and_trials_is_a_total(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=3, concurrency=1, llm="offline"))
    evoforge.resume(run_dir, more=2)
    assert _total(run_dir) == 5 and _rule(run_dir)["trials"] == 5
    evoforge.resume(run_dir, trials=7)
    assert _total(run_dir) == 7 and _rule(run_dir)["trials"] == 7


def test_a_total_below_what_is_done_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=5, concurrency=1, llm="offline"))
    with pytest.raises(RunError, match=r"--trials 3 is a total, and this run has done 5 trials already"):
        evoforge.resume(run_dir, trials=3)
    with pytest.raises(RunError, match="not both"):
        evoforge.resume(run_dir, trials=9, more=2)
    with pytest.raises(RunError, match="--more 0"):
        evoforge.resume(run_dir, more=0)
    assert _rule(run_dir)["trials"] == 5 and _total(run_dir) == 5


def test_cli_resume_more_and_its_refusal_in_one_line(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=3, concurrency=1, llm="offline"))
    runner = CliRunner()
    done = runner.invoke(app, ["resume", str(run_dir), "--more", "2"])
    assert done.exit_code == 0, done.output
    assert _total(run_dir) == 5
    refused = runner.invoke(app, ["resume", str(run_dir), "--trials", "2"])
    assert refused.exit_code == 2
    assert "has done 5 trials already" in " ".join(refused.output.split())  # the console may wrap the line
    assert _total(run_dir) == 5 and _rule(run_dir)["trials"] == 5


def test_the_tasks_target_score_stops_the_run(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", extra_yaml="target_score: -3.9\n")
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=40, concurrency=1,
                                                                                 llm="offline"))
    assert summary.stop_reason.startswith("reached target score -3.9")
    assert _total(tmp_path / "run") < 40 and _rule(tmp_path / "run")["target_score"] == -3.9


def test_the_command_lines_target_score_overrides_the_tasks(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", extra_yaml="target_score: 100\n")  # out of reach: the score is <= 0
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=40, concurrency=1,
                                                                                 llm="offline", target_score=-3.9))
    assert summary.stop_reason.startswith("reached target score -3.9")
    assert _rule(tmp_path / "run")["target_score"] == -3.9


def test_resuming_with_a_target_already_reached_starts_nothing(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    run_dir = tmp_path / "run"
    first = evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=4, concurrency=1, llm="offline"))
    assert first.best is not None
    summary = evoforge.resume(run_dir, more=10, target_score=first.best.score)
    assert summary.stop_reason == f"reached target score {first.best.score:g} (trial #{first.best.id})"
    assert _total(run_dir) == 4

"""A trial's first stage started ahead (`Engineer.start_ahead`, while the trial waits for its evaluation slot): the
jail and the harness start early, but nothing of the evaluator or the candidate runs before `evaluate` lets it go,
the stage's clock starts then, and a stage started ahead and never used leaves no process behind."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from containment import BWRAP
from helpers import knob_task
from sqlalchemy import select

import evoforge
from evoforge.config import RunSettings
from evoforge.experiment import Engineer
from evoforge.experiment.sandbox import sweep
from evoforge.loop import Conductor
from evoforge.memory import tables
from evoforge.memory.record import Record
from evoforge.models import Trial, TrialStatus
from evoforge.task.loader import load_task

# The evaluator notes when it was imported (in the trial folder, which the jail may write) and returns it.
EVALUATOR = """
import json, os, runpy, time
IMPORTED = time.time()
with open(os.path.join(os.environ["EVOFORGE_TRIAL_DIR"], "imported.json"), "a") as f:
    f.write(json.dumps(IMPORTED) + "\\n")

def evaluate(program_path):
    time.sleep(SLEEP)
    x = runpy.run_path(program_path)["x"]
    return {"score": -(x - 3.0) ** 2, "imported": IMPORTED}
"""
PROGRAM = "x = 1.0\n# knob\n"


def _task(tmp_path: Path, sleep: float = 0.0, timeout_s: float = 30) -> Engineer:
    root = knob_task(tmp_path / "task", extra_yaml="limits: {isolation: auto}\n")
    (root / "evaluator.py").write_text(EVALUATOR.replace("SLEEP", repr(sleep)))
    text = (root / "task.yaml").read_text().replace("timeout_s: 30", f"timeout_s: {timeout_s}")
    (root / "task.yaml").write_text(text)
    return Engineer(load_task(root))


async def _start_ahead(engineer: Engineer, trial_dir: Path) -> None:
    """Start PROGRAM's first stage ahead in `trial_dir` and wait (bounded) until its jail's supervisor has started."""
    await engineer.start_ahead(PROGRAM, trial_dir)
    ahead = engineer._ahead[trial_dir.resolve()]
    jail = ahead.started.jail
    assert jail is not None
    for _ in range(400):  # at most 20 s
        if b"ready" in jail.reported:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the jail started ahead never said it was ready")


@BWRAP
def test_nothing_of_the_evaluator_runs_before_evaluate_lets_it_go(tmp_path: Path) -> None:
    engineer = _task(tmp_path)
    trial_dir = tmp_path / "run" / "trials" / "2"

    async def scenario() -> tuple[float, object]:
        await _start_ahead(engineer, trial_dir)
        await asyncio.sleep(0.3)  # room for a harness that would not wait to go ahead anyway
        assert not (trial_dir / "imported.json").exists(), "the evaluator was imported before the trial went"
        went = time.time()
        return went, await engineer.evaluate(PROGRAM, trial_dir)

    went, outcome = asyncio.run(scenario())
    assert outcome.status is TrialStatus.SUCCEEDED, outcome
    assert outcome.score == -4.0
    imports = (trial_dir / "imported.json").read_text().split()
    assert len(imports) == 1  # one evaluation: the one started ahead, not a second one
    assert float(imports[0]) >= went


@BWRAP
def test_the_stage_clock_starts_when_it_goes_not_when_it_started(tmp_path: Path) -> None:
    engineer = _task(tmp_path, sleep=0.5, timeout_s=1.5)
    trial_dir = tmp_path / "run" / "trials" / "2"

    async def scenario() -> object:
        await _start_ahead(engineer, trial_dir)
        await asyncio.sleep(2.0)  # longer than the stage's timeout: a clock started with the jail would run out
        return await engineer.evaluate(PROGRAM, trial_dir)

    outcome = asyncio.run(scenario())
    assert outcome.status is TrialStatus.SUCCEEDED, outcome
    assert outcome.seconds < 1.5


@BWRAP
def test_a_stage_started_ahead_and_dropped_leaves_nothing_running(tmp_path: Path) -> None:
    engineer = _task(tmp_path)
    trial_dir = tmp_path / "run" / "trials" / "2"

    async def scenario() -> tuple[int, str]:
        await _start_ahead(engineer, trial_dir)
        started = engineer._ahead[trial_dir.resolve()].started
        await engineer.drop_ahead(trial_dir)
        assert sweep(started.token) == []  # at once, no process carries the trial's token
        return started.proc.pid, started.token

    pid, token = asyncio.run(scenario())
    assert sweep(token) == []
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not (trial_dir / "imported.json").exists()


@BWRAP
def test_in_a_run_no_evaluator_starts_before_its_trial_is_running(tmp_path: Path) -> None:
    """Concurrency 1 with proposals prepared ahead: the waiting trials' first stages start ahead, yet each
    trial's evaluator is imported once, after the record marked the trial running."""
    engineer = _task(tmp_path, sleep=0.2)
    run_dir = tmp_path / "run"
    evoforge.run(engineer.task.root, run_dir=run_dir,
                 settings=RunSettings(trials=8, concurrency=1, prefetch=2, llm="offline", seed=1))
    with Record.for_run_dir(run_dir, read_only=True) as record, record._engine.connect() as conn:
        started = dict(conn.execute(select(tables.trials.c.id, tables.trials.c.started_at)).all())
        evaluated = [t for t in record.trials() if t.reused_from is None and started[t.id] is not None]
    assert len(evaluated) >= 5
    ahead = 0
    for trial in evaluated:
        folder = run_dir / "trials" / str(trial.id)
        running = _epoch(started[trial.id])
        imports = [float(x) for x in (folder / "imported.json").read_text().split()]
        assert len(imports) == 1, (trial.id, imports)
        assert imports[0] >= running - 0.001, trial.id
        assert trial.metrics["imported"] == imports[0]
        # its program was written before it ran: started ahead (`evaluate` writes it after the record marked it running)
        ahead += (folder / "program.py").stat().st_mtime < running
    assert ahead >= 1  # the run did start stages ahead (else this test proves nothing)
    assert sum((p / "imported.json").exists() for p in (run_dir / "trials").iterdir()) == len(evaluated)


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


@BWRAP
def test_a_trial_taking_a_free_slot_starts_its_jail_while_the_record_marks_it_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No proposal waits (prefetch 0), so no stage starts before its slot is taken; once it is, the jail starts
    while the record's thread marks the trial running: `start_ahead` is called before `_start` returns."""
    engineer = _task(tmp_path)
    called: dict[str, threading.Event] = collections.defaultdict(threading.Event)
    seen: list[bool] = []
    start_ahead, start = Engineer.start_ahead, Conductor._start

    async def spy_ahead(self: Engineer, code: str, trial_dir: Path, **kw: object) -> None:
        called[Path(trial_dir).name].set()
        await start_ahead(self, code, trial_dir, **kw)

    def spy_start(self: Conductor, trial: Trial, fingerprint: str) -> object:  # on the record's thread
        seen.append(called[str(trial.id)].wait(timeout=10))
        return start(self, trial, fingerprint)

    monkeypatch.setattr(Engineer, "start_ahead", spy_ahead)
    monkeypatch.setattr(Conductor, "_start", spy_start)
    run_dir = tmp_path / "run"
    evoforge.run(engineer.task.root, run_dir=run_dir,
                 settings=RunSettings(trials=4, concurrency=1, prefetch=0, llm="offline", seed=1))
    assert len(seen) >= 3 and all(seen), seen
    with Record.for_run_dir(run_dir, read_only=True) as record:
        evaluated = [t for t in record.trials() if t.reused_from is None]
    for trial in evaluated:  # and the evaluator ran once, in its turn
        imports = (run_dir / "trials" / str(trial.id) / "imported.json").read_text().split()
        assert len(imports) == 1 and trial.metrics["imported"] == float(imports[0])

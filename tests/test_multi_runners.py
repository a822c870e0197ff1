"""Two `evoforge run` processes on one PostgreSQL record (the second started with --join): together they make the
run's 40 trials, exactly, no trial is evaluated twice, and when one runner is killed (SIGKILL) mid-way the other
finishes the run, the killed runner's trials included once their lease ran out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SLACK_S, knob_task, wait_until
from postgres import throwaway_cluster
from sqlalchemy import select

from evoforge.memory import tables as t
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

TRIALS = 40
LEASE_S = 2.0
# The knob evaluator, which also leaves a marker file of its own in the trial folder for each evaluation it
# completes (the folder is the only place it may write): markers per trial id, over both run folders, count them.
COUNTING_EVALUATOR = """\
import os
import runpy
import time

def evaluate(program_path):
    time.sleep(0.15)
    x = runpy.run_path(program_path)["x"]
    folder = os.path.dirname(os.path.abspath(program_path))
    with open(os.path.join(folder, f"evaluated-{os.getpid()}-{time.time_ns()}"), "w") as fh:
        fh.write("done")
    return {"score": -(x - 3.0) ** 2, "x": x}
"""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_cluster() as url:
        yield url


def _database(pg_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


def _runner(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "evoforge.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finished_by(url: str, run_id: int, runner: str) -> int:
    c = t.trials.c
    with Record(url, read_only=True, run_id=run_id) as record, record._engine.connect() as conn:
        return len(conn.execute(select(c.id).where(c.run_id == run_id, c.runner == runner,
                                                   c.finished_at.is_not(None))).all())


def test_two_runners_one_killed_the_other_finishes(pg_url: str, tmp_path: Path) -> None:
    url = _database(pg_url, "two_runners")
    task = knob_task(tmp_path / "task")
    (task / "evaluator.py").write_text(COUNTING_EVALUATOR, encoding="utf-8")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    common = ["--record", url, "--llm", "offline", "--concurrency", "2", "--lease", str(LEASE_S)]
    first = _runner(["run", str(task), "--run-dir", str(a_dir), "--trials", str(TRIALS), *common], tmp_path / "a.log")
    second = None
    try:
        assert wait_until(lambda: (a_dir / "run.json").exists() or first.poll() is not None, timeout_s=SLACK_S * 3)
        a_file = json.loads((a_dir / "run.json").read_text())
        run_id, a_runner = a_file["run_id"], a_file["runner"]
        second = _runner(["run", str(task), "--run-dir", str(b_dir), "--join", str(run_id), *common],
                         tmp_path / "b.log")
        assert wait_until(lambda: (b_dir / "run.json").exists() or second.poll() is not None, timeout_s=SLACK_S * 3)
        b_runner = json.loads((b_dir / "run.json").read_text())["runner"]
        # both work on the run: the joiner has finished a trial, and the first runner one more since
        a_before = _finished_by(url, run_id, a_runner)
        assert wait_until(lambda: _finished_by(url, run_id, b_runner) >= 1 or second.poll() is not None,
                          timeout_s=SLACK_S * 6, interval_s=0.1), (tmp_path / "b.log").read_text()
        assert wait_until(lambda: _finished_by(url, run_id, a_runner) > a_before or first.poll() is not None,
                          timeout_s=SLACK_S * 6, interval_s=0.1)
        assert first.poll() is None and second.poll() is None, "a runner ended before the kill"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=SLACK_S)
        with Record(url, read_only=True, run_id=run_id) as record:
            left = {tr.id for tr in record.trials([TrialStatus.PROPOSED, TrialStatus.RUNNING])}
        assert left, "the killed runner held no trial: nothing to take over"
        assert second.wait(timeout=SLACK_S * 15) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=SLACK_S)

    with Record(url, read_only=True, run_id=run_id) as record:
        trials = record.trials()
        rows = {r.id: r for r in record.list_runs()}
    assert len(trials) == TRIALS and all(tr.status.finished for tr in trials)  # none lost, none more
    assert rows[run_id].total == TRIALS and rows[run_id].state == "finished"
    by_runner = Counter(_runner_of(url, tr.id) for tr in trials)
    assert by_runner[a_runner] >= 2 and by_runner[b_runner] >= 2, by_runner
    assert all(_runner_of(url, i) == b_runner for i in left)  # the killed runner's trials: finished by the other
    evaluated = Counter(int(marker.parent.name) for folder in (a_dir, b_dir)
                        for marker in (folder / "trials").glob("*/evaluated-*"))
    for trial in trials:
        runs = evaluated[trial.id]
        if trial.id in left:  # the killed runner may have evaluated it, then died before recording it
            assert (0 if trial.reused_from is not None else 1) <= runs <= 2, (trial.id, trial.reused_from, runs)
        elif trial.reused_from is None and trial.status in (TrialStatus.SUCCEEDED, TrialStatus.FAILED):
            assert runs == 1, (trial.id, runs)  # evaluated once, by one runner
        else:
            assert runs == 0, (trial.id, trial.status, runs)  # reused, rejected: never evaluated
    assert sum(evaluated.values()) <= TRIALS + len(left)


def _runner_of(url: str, trial_id: int) -> str | None:
    with Record(url, read_only=True) as record, record._engine.connect() as conn:
        return conn.execute(select(t.trials.c.runner).where(t.trials.c.id == trial_id)).scalar()

"""Ctrl-C (SIGINT to the process group, as a terminal sends it) during a real `evoforge run`: one line, exit status
130, no traceback, and the stop reason kept in the record so `evoforge status` says why the run stopped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from taskfactory import make_task

CLI = [sys.executable, "-m", "evoforge.cli"]


def _query(run_dir: Path, sql: str) -> int:
    """One number from the record, read without taking part in the run's transactions (0 while it is being made)."""
    db = run_dir / "record.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:  # the run is creating its tables right now
        return 0


def _wait_until(done: Callable[[], bool], proc: subprocess.Popen, what: str, deadline_s: float = 120.0) -> None:
    """Poll the record until `done()` (bounded; fails at once if the run exits first)."""
    deadline = time.monotonic() + deadline_s
    while not done():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited (status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {deadline_s} s")
        time.sleep(0.05)


MOMENTS = {
    # the run's record exists, its first trial not yet: the run is assembling its pillars (knowledge base, ...)
    "at start-up": lambda run_dir: _query(run_dir, "select count(*) from runs") >= 1,
    # trials have finished, others are being evaluated
    "mid-run": lambda run_dir: _query(run_dir, "select count(*) from trials where finished_at is not null") >= 2,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_gives_one_line_status_130_and_a_recorded_reason(tmp_path: Path, moment: str) -> None:
    task = make_task(tmp_path / "task", sleep=0.3)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _wait_until(lambda: MOMENTS[moment](run_dir), proc, f"the moment '{moment}'")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 130, f"status {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    said = " ".join(out.split())  # the console may wrap its lines
    assert said.count("stopped:") == 1 and "best score" not in said
    assert f"stopped: interrupted (Ctrl-C); nothing is lost: `evoforge resume {run_dir}` continues" in said
    status = subprocess.run([*CLI, "status", str(run_dir), "--json"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stopped_because"].startswith("interrupted (Ctrl-C)")


def test_a_ctrl_c_just_after_the_runs_first_row_is_recorded_as_the_runs_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moment between the run's row and the code that records a stop (a loaded machine hit it once): the
    interrupt is held until that code is in place, so the run still ends interrupted with its reason recorded."""
    import evoforge
    from evoforge.config import RunSettings
    from evoforge.memory.record import Record

    real = Record.create_run

    def create_then_interrupt(self: Record, **kwargs: object) -> int:
        run_id = real(self, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Python raises it at once, in this (the main) thread, unless held
        return run_id

    monkeypatch.setattr(Record, "create_run", create_then_interrupt)
    summary = evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run",
                           settings=RunSettings(trials=3, llm="offline"))
    assert summary.interrupted and "interrupted (Ctrl-C)" in summary.stop_reason
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    with Record.for_run_dir(tmp_path / "run", read_only=True) as record:
        assert "interrupted" in (record.load_state("stopped") or {}).get("reason", "")
        assert record.trials() == []

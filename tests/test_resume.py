"""A run killed with SIGKILL mid-run, then resumed: no completed trial is lost, changed or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from taskfactory import make_task

from evoforge.memory.record import Record
from evoforge.models import TrialStatus

CLI = [sys.executable, "-m", "evoforge.cli"]


def _completed(run_dir: Path) -> dict[int, tuple]:
    record = Record.for_run_dir(run_dir)
    try:
        return {
            t.id: (t.status, t.score, t.code, t.parent_ids, t.finished_at)
            for t in record.trials()
            if t.status.finished
        }
    finally:
        record.close()


def _wait_for_completed(run_dir: Path, n: int, deadline_s: float, log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "record.db").exists():
            try:
                if len(_completed(run_dir)) >= n:
                    return
            except Exception:  # the run may be creating its tables right now
                pass
        time.sleep(0.1)
    raise AssertionError(
        f"the run did not complete {n} trials within {deadline_s}s (exit code {proc.poll()}); its output ends:\n"
        + log.read_text(errors="replace")[-4000:]
    )


def _status(run_dir: Path) -> dict:
    out = subprocess.run([*CLI, "status", str(run_dir), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_kill_9_then_resume_loses_nothing(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", sleep=0.4)
    run_dir = tmp_path / "run"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", "14",
             "--concurrency", "2"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_for_completed(run_dir, 4, deadline_s=60, log=log, proc=proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and every evaluator it had started
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = _completed(run_dir)
    status = _status(run_dir)
    assert status["succeeded"] >= 4 and status["best_score"] is not None
    assert sum(status[s.value] for s in TrialStatus) < 14

    done = subprocess.run([*CLI, "resume", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    after = _completed(run_dir)
    for trial_id, fields in before.items():
        assert after[trial_id] == fields, f"completed trial {trial_id} changed on resume"
    status = _status(run_dir)
    assert sum(status[s.value] for s in TrialStatus) == 14  # the run's own stopping rule, no duplicates
    assert status["running"] == 0 and status["proposed"] == 0
    assert len(after) == 14

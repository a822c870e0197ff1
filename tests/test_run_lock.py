"""One process per run directory: a second `resume` (or `run --run-dir`) of a run that is still going is refused
with the holder named, and the live run finishes untouched; the lock never outlives its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from taskfactory import make_task

from evoforge.errors import RunError
from evoforge.models import TrialStatus
from evoforge.run_lock import run_lock

CLI = [sys.executable, "-m", "evoforge.cli"]


def test_the_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with run_lock(tmp_path):
        with pytest.raises(RunError, match=rf"being run right now by pid {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released on exit
        pass


GATED_EVALUATOR = """\
import runpy
import time
from pathlib import Path

def evaluate(program_path):
    deadline = time.monotonic() + 60  # the test opens the gate; this bound only keeps a broken test finite
    while not Path({gate!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    x = runpy.run_path(program_path)["x"]
    return {{"score": -(x - 3.0) ** 2}}
"""


def test_second_resume_of_a_live_run_is_refused(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # isolation none: the evaluator sees the gate file (named, so with the network on)
    task = make_task(tmp_path / "task", extra_yaml="limits: {isolation: none, network: true}\n")
    (task / "evaluator.py").write_text(GATED_EVALUATOR.format(gate=str(gate)))
    run_dir = tmp_path / "run"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*CLI, "run", str(task), "--run-dir", str(run_dir), "--llm", "offline",
                                 "--trials", "6", "--concurrency", "2"], stdout=out, stderr=subprocess.STDOUT)
    try:
        lock = run_dir / "run.lock"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # the run holds its lock; its seed waits
            if lock.exists() and f"pid {proc.pid}" in lock.read_text():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended early: " + log.read_text()[-2000:]
        for args in (["resume", str(run_dir)], ["run", str(task), "--run-dir", str(run_dir), "--llm", "offline"]):
            second = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"being run right now by pid {proc.pid}" in second.stderr + second.stdout
        gate.touch()
        assert proc.wait(timeout=120) == 0, log.read_text()[-2000:]
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
    status = json.loads(subprocess.run([*CLI, "status", str(run_dir), "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert sum(status[s.value] for s in TrialStatus) == 6 and status["running"] == 0  # nothing re-run or duplicated

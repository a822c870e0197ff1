"""Shared helpers of the containment tests: a task whose evaluator runs the candidate in-process or through
`evoforge.sandbox.run_candidate`, a trial folder laid out like a run's, and an evaluation that checks that nothing
of the trial survives it."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from evoforge.config import TaskConfig
from evoforge.experiment import Engineer
from evoforge.experiment.isolation import probe
from evoforge.models import Outcome, TrialStatus
from evoforge.task.loader import Task

IN_PROCESS = """
import runpy

def evaluate(program_path):
    return runpy.run_path(program_path)["result"]()
"""
# Runs result() in the candidate's own jail; the evaluator alone turns what it returned into the score.
THROUGH_HELPER = """
from evoforge.sandbox import run_candidate

def evaluate(program_path):
    run = run_candidate(program_path, function="result", timeout_s={timeout})
    if not run.ok:
        return {"score": 0.0, "failed": run.error_class, "reason": run.reason()}
    value = run.value if isinstance(run.value, dict) else {}
    score = value.get("score")
    return {"score": float(score) if isinstance(score, (int, float)) and score < 10 else 0.0, "value": value}
"""
HONEST = "def result():\n    return {'score': 2.5}\n"
MODES = [pytest.param(m, marks=pytest.mark.skipif(probe(m) is not None, reason=f"{m}: {probe(m)}"))
         for m in ("bwrap", "unshare", "none")]
NAMESPACED = [p for p in MODES if p.values[0] != "none"]
BWRAP = pytest.mark.skipif(probe("bwrap") is not None, reason=f"bwrap: {probe('bwrap')}")


def make_task(tmp_path: Path, evaluator: str = IN_PROCESS, *, timeout: float = 20, hidden: tuple[str, ...] = (),
              files: dict[str, str] | None = None, **limits: Any) -> Task:
    """A task folder under tmp_path/task with `evaluator`; `files` are extra files (relative path -> text)."""
    root = tmp_path / "task"
    root.mkdir(parents=True, exist_ok=True)
    (root / "problem.md").write_text("maximise the score\n")
    (root / "program.py").write_text(HONEST)
    (root / "evaluator.py").write_text(evaluator.replace("{timeout}", str(timeout)))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    limits.setdefault("isolation", "auto")
    cfg = TaskConfig(name="t", problem="problem.md", program="program.py", evaluator="evaluator.py",
                     timeout_s=timeout * 2, limits=limits, **({"hidden": list(hidden)} if hidden else {}))
    return Task(root=root, config=cfg, problem_text="maximise the score\n", seed_program="")


def trial_dir(tmp_path: Path, n: int = 1) -> Path:
    """A trial folder laid out like a run's: run/trials/N, with the record in run/."""
    run = tmp_path / "run"
    (run / "trials").mkdir(parents=True, exist_ok=True)
    if not (run / "record.db").exists():
        (run / "record.db").write_bytes(b"SQLite format 3\x00record: every prompt")
    return run / "trials" / str(n)


CONNECT = """
import socket

def result():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        return {"score": 1.0, "error": ""}
    except OSError as exc:
        return {"score": 0.0, "error": str(exc)}
"""


def survivors(marker: bytes) -> list[int]:
    """Pids of live processes whose environment or command line contains `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except (OSError, IndexError):
            continue
        if marker in env or marker in cmd:
            found.append(int(name))
    return found


def evaluate(task: Task, code: str, where: Path) -> Outcome:
    """Evaluate `code`, then check that nothing started for that trial survives it."""
    outcome = asyncio.run(Engineer(task).evaluate(textwrap.dedent(code), where))
    assert survivors(f"EVOFORGE_TRIAL_DIR={where.resolve()}\0".encode()) == []
    return outcome


def assert_honest_run_goes_on(task: Task, tmp_path: Path) -> None:
    out = evaluate(task, HONEST, trial_dir(tmp_path, 99))
    assert out.status is TrialStatus.SUCCEEDED and out.score == 2.5, (out.error_class, out.error_message)

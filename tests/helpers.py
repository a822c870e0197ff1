"""Shared test helpers: Task objects built in one place, and the timing rules of the suite — waits are bounded
waits for an event, and the only wall-clock bounds are hang guards wide enough for a loaded machine."""

from __future__ import annotations

import importlib.util
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from evoforge.config import LLMSettings, TaskConfig
from evoforge.task.loader import Task

# What a busy machine (load 8 on 2 cores) may add to a step that takes well under a second when idle. A bound
# built on it only tells a hang from a slow run; behaviour is asserted through events, counts and outcomes.
SLACK_S = 20.0

# An evaluator that imports the candidate and returns its result() — the Python-function evaluator of most tests.
RUN_EVALUATOR = """
import runpy

def evaluate(program_path):
    return runpy.run_path(program_path)["result"]()
"""


# The loop-level task: the program sets x, the evaluator scores -(x-3)^2 (the seed, x = 1, scores -4.0).
KNOB_PROGRAM = textwrap.dedent(
    """\
    x = 1.0
    # knob
    """
)

KNOB_EVALUATOR = textwrap.dedent(
    """\
    import runpy
    import time

    SLEEP = {sleep}

    def evaluate(program_path):
        time.sleep(SLEEP)
        x = runpy.run_path(program_path)["x"]
        return {{"score": -(x - 3.0) ** 2, "x": x}}
    """
)


def task_folder(folder: Path, *, task_yaml: str, files: dict[str, str]) -> Path:
    """A task folder as a user writes it: task.yaml and `files` (UTF-8); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in {"task.yaml": task_yaml, **files}.items():
        (folder / name).write_text(body, encoding="utf-8")
    return folder


def knob_task(root: Path, *, sleep: float = 0.0, extra_yaml: str = "") -> Path:
    """The loop-level task folder (KNOB_PROGRAM, KNOB_EVALUATOR sleeping `sleep` s per evaluation)."""
    task_yaml = ("name: knob\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\n"
                 "objective: {metric: score, direction: maximize}\ntimeout_s: 30\n" + extra_yaml)
    files = {"problem.md": "Choose x to maximise -(x-3)^2. The program sets x.\n", "program.py": KNOB_PROGRAM,
             "evaluator.py": KNOB_EVALUATOR.format(sleep=sleep)}
    return task_folder(root, task_yaml=task_yaml, files=files)


def task_object(root: Path, *, files: dict[str, str] | None = None, problem_text: str = "maximise the score\n",
                seed_program: str = "", **config: Any) -> Task:
    """A Task over `root` (created) with `files` written there (dedented); the config defaults to name t,
    problem.md and program.py, and takes any other TaskConfig field as a keyword."""
    root.mkdir(parents=True, exist_ok=True)
    for name, body in (files or {}).items():
        (root / name).write_text(textwrap.dedent(body))
    cfg = TaskConfig(**{"name": "t", "problem": "problem.md", "program": "program.py", **config})
    return Task(root=root, config=cfg, problem_text=problem_text, seed_program=seed_program)


def evaluator_task(tmp_path: Path, *, evaluator: str = RUN_EVALUATOR,
                   program: str = "def result():\n    return {'score': 0.0}\n", **config: Any) -> Task:
    """A task in tmp_path/task whose Python evaluator is `evaluator` (evaluator.py), with a program.py."""
    files = {"problem.md": "maximise the score\n", "program.py": program, "evaluator.py": evaluator}
    return task_object(tmp_path / "task", files=files, evaluator="evaluator.py", **config)


def llm_task(root: Path, base_url: str, *, problem_text: str, seed_program: str, **config: Any) -> Task:
    """A task run by `python {program}` whose researcher is the fake LLM at base_url (model fake-model, no
    retries) unless `llm` is given."""
    config.setdefault("llm", LLMSettings(model="fake-model", base_url=base_url, max_retries=0))
    return task_object(root, problem_text=problem_text, seed_program=seed_program, command="python {program}",
                       **config)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, interval_s: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes (bounded); returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file at `path` as module `name` (an example's evaluator or program, called directly)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

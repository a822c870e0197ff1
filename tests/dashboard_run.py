"""The record the dashboard tests read: a real offline run (a dozen trials) of a task whose evaluator streams a
loss curve and fails for large x, plus one hostile trial whose name, motivation, diff, error, LLM call and lesson
carry HTML and script (as an LLM could write them)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import evoforge
from evoforge.config import RunSettings
from evoforge.memory.record import Record
from evoforge.models import LLMCall

TRIALS = 12
HOSTILE_MOTIVATION = "<script>window.pwned=1</script>"
HOSTILE_NAME = '<img src=x onerror="window.pwned=2">'

EVALUATOR = textwrap.dedent("""\
    import runpy
    import sys
    from evoforge.telemetry import report

    def evaluate(program_path):
        x = runpy.run_path(program_path)["x"]
        print(f"evaluating x = {x}")
        print("a warning of the evaluator's", file=sys.stderr)
        for step in range(6):
            report(step=step, loss=abs(x - 3.0) + 2.0 / (step + 1))
        if x > 3.6:
            raise ValueError(f"x = {x} is past the wall")
        return {"score": -(x - 3.0) ** 2, "x": x}
    """)
TASK_YAML = ("name: dash-toy\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\n"
             "objective: {metric: score, direction: maximize}\ntimeout_s: 30\n")


def make_run(root: Path) -> Path:
    """Run the task offline for TRIALS trials in root/run, then add the hostile trial; returns the run folder."""
    task = root / "task"
    task.mkdir(parents=True)
    files = {"task.yaml": TASK_YAML, "problem.md": "Choose x to maximise -(x-3)^2.\n", "program.py": "x = 1.0\n",
             "evaluator.py": EVALUATOR}
    for name, body in files.items():
        (task / name).write_text(body, encoding="utf-8")
    run_dir = root / "run"
    evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=TRIALS, concurrency=2, llm="offline", seed=3))
    add_hostile_trial(run_dir)
    return run_dir


def add_hostile_trial(run_dir: Path) -> int:
    """A failed trial under the seed whose every text field holds markup; returns its id."""
    with Record.for_run_dir(run_dir) as record:
        created = record.add_trial(
            parent_ids=[1], inspiration_ids=[], name=HOSTILE_NAME, motivation=HOSTILE_MOTIVATION,
            code="x = 2.0  # <script>window.pwned=3</script>\n",
            diff="--- a/program.py\n+++ b/program.py\n@@ -1 +1 @@\n-x = 1.0\n"
                 "+x = 2.0  # <script>window.pwned=3</script>\n",
            proposer="llm", model="fake-model")
        trial_id = int(getattr(created, "id", created))  # a Trial, or its id from a record before issue 12
        record.fail_trial(trial_id, "evaluation_error", "<script>window.pwned=4</script> went wrong")
        record.add_llm_calls(trial_id, [LLMCall(role="researcher", model="fake-model", tokens_in=10, tokens_out=5,
                                                latency_s=0.1, prompt="<b>prompt</b>",
                                                response="<script>window.pwned=5</script>")])
        record.add_analysis(trial_id, "lesson", "<script>window.pwned=6</script>: lesson", {})
    return trial_id


def add_plain_trial(run_dir: Path, name: str) -> int:
    """One more succeeded-looking trial as a running loop would add it (for the live tests)."""
    with Record.for_run_dir(run_dir) as record:
        created = record.add_trial(parent_ids=[1], inspiration_ids=[], name=name, motivation="live",
                                   code="x = 1.5\n", diff="", proposer="offline", model=None)
        trial_id = int(getattr(created, "id", created))
        record.reject_trial(trial_id, "not_novel", "same as an earlier trial")
    return trial_id

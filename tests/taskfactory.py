"""Small task folders for loop-level tests: a program with one constant and an evaluator scoring it."""

from __future__ import annotations

import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent(
    """\
    x = 1.0
    # knob
    """
)

EVALUATOR = textwrap.dedent(
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


def make_task(root: Path, *, sleep: float = 0.0, extra_yaml: str = "") -> Path:
    """Write a task whose score is -(x-3)^2 for the program's `x`; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "problem.md").write_text("Choose x to maximise -(x-3)^2. The program sets x.\n")
    (root / "program.py").write_text(PROGRAM)
    (root / "evaluator.py").write_text(EVALUATOR.format(sleep=sleep))
    (root / "task.yaml").write_text(
        "name: knob\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\n"
        "objective: {metric: score, direction: maximize}\ntimeout_s: 30\n" + extra_yaml
    )
    return root

"""Evaluator of the starter task: runs the candidate's solve() in a subprocess and scores the point returned.

evoforge calls evaluate(program_path) with the trial folder as working directory; the returned dict holds the
objective metric ("score") and any other metrics. A broken candidate raises: the trial fails with the reason.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

TIMEOUT_S = 10.0
RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("candidate", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("RESULT " + json.dumps(module.solve()))
"""


def evaluate(program_path: str) -> dict:
    """Score the candidate at `program_path`; raise RuntimeError with a one-line reason when it is broken."""
    path = Path(program_path).resolve()
    try:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=path.parent,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"solve() did not return within {TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise RuntimeError(f"the program crashed: {last}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError("solve() printed no result")
    point = json.loads(lines[-1].removeprefix("RESULT "))
    x, y = _coordinate(point, "x"), _coordinate(point, "y")
    score = -((x - 3.0) ** 2) - (y + 1.0) ** 2 + 0.5 * math.cos(4.0 * x)
    return {"score": score, "x": x, "y": y, "distance": math.hypot(x - 3.0, y + 1.0)}


def _coordinate(point: object, key: str) -> float:
    value = point.get(key) if isinstance(point, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuntimeError(f"solve() must return {{'x': float, 'y': float}}; got {key}={value!r}")
    if not -10.0 <= value <= 10.0:
        raise RuntimeError(f"{key}={value} is outside [-10, 10]")
    return float(value)

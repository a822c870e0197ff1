"""Evaluator of the starter task: runs the candidate's solve() in its own sandbox and scores the point returned.

evoforge calls evaluate(program_path) with the trial folder as working directory; `run_candidate` runs the
candidate in a jailed process of its own (never in this one, so it cannot report a score itself). The returned
dict holds the objective metric ("score") and any other metrics. A broken candidate raises: the trial fails
with the reason.
"""

from __future__ import annotations

import math

from evoforge.sandbox import run_candidate

TIMEOUT_S = 10.0


def evaluate(program_path: str) -> dict:
    """Score the candidate at `program_path`; raise RuntimeError with a one-line reason when it is broken."""
    run = run_candidate(program_path, function="solve", timeout_s=TIMEOUT_S)
    if run.timed_out:
        raise RuntimeError(f"solve() did not return within {TIMEOUT_S:g} s")
    if not run.ok:
        last = (run.stderr.strip().splitlines() or [str(run.error_class)])[-1]
        raise RuntimeError(f"the program crashed: {last}")
    point = run.value
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

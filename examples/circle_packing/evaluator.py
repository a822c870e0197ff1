"""Evaluator of the circle-packing task: runs the candidate's construct_packing() in a subprocess, scores it.

evoforge calls evaluate(program_path) with the trial folder as working directory. The candidate never runs in
this process: `evoforge.sandbox.run_candidate` calls its construct_packing() in a jailed process of its own and
hands back the packing; only this evaluator turns it into a score. A broken candidate (crash, hang, invalid
packing) scores 0.0 with "valid": 0 and a "reason"; it never raises.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from evoforge.sandbox import run_candidate

N_CIRCLES = 26
TOLERANCE = 1e-9
TIMEOUT_S = 30.0
TIMEOUT_ENV = "CIRCLE_PACKING_TIMEOUT_S"


class Invalid(Exception):
    """The candidate produced no valid packing; the message is the reason reported in the metrics."""


def evaluate(program_path: str, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Score the packing built by the program at `program_path`: the sum of radii, or 0.0 when invalid.

    The time limit is `timeout_s`, else the CIRCLE_PACKING_TIMEOUT_S environment variable, else 30 s.
    """
    limit = timeout_s if timeout_s is not None else float(os.environ.get(TIMEOUT_ENV, TIMEOUT_S))
    try:
        centers, radii = _parse(_run_candidate(Path(program_path).resolve(), limit))
        _check_packing(centers, radii)
    except Invalid as exc:
        return {"score": 0.0, "valid": 0, "reason": str(exc)}
    total = math.fsum(radii)
    return {"score": total, "sum_radii": total, "valid": 1, "min_radius": min(radii), "n_circles": N_CIRCLES}


def _run_candidate(path: Path, limit: float) -> Any:
    """Run construct_packing() of `path` in its own sandboxed process; return what it returned (JSON-decoded)."""
    run = run_candidate(path, function="construct_packing", timeout_s=limit)
    if run.timed_out:
        raise Invalid(f"timeout: construct_packing() did not return within {limit:g} s")
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no error output"])[-1].strip()
        raise Invalid(f"crash (exit status {run.returncode}): {last}"[:500])
    if not run.has_value:
        raise Invalid("no result: construct_packing() printed nothing the runner could read")
    value = run.value
    if isinstance(value, list) and len(value) == 2:
        return {"centers": value[0], "radii": value[1]}
    raise Invalid("bad result: construct_packing() must return (centers, radii) as sequences")


def _parse(data: Any) -> tuple[list[tuple[float, float]], list[float]]:
    """Check the shapes and finiteness of the packing; return centers as (x, y) pairs and radii."""
    if not isinstance(data, dict):
        raise Invalid("bad result: the runner's output is not a mapping of centers and radii")
    centers, radii = data.get("centers"), data.get("radii")
    if not isinstance(centers, list) or not isinstance(radii, list):
        raise Invalid("bad result: construct_packing() must return (centers, radii) as sequences")
    if len(centers) != N_CIRCLES or len(radii) != N_CIRCLES:
        counts = f"got {len(centers)} and {len(radii)}"
        raise Invalid(f"wrong count: expected {N_CIRCLES} centers and radii, {counts}")
    points = []
    for i, center in enumerate(centers):
        if not isinstance(center, list) or len(center) != 2 or not all(_finite(v) for v in center):
            raise Invalid(f"bad center {i}: expected 2 finite coordinates, got {center!r}")
        points.append((float(center[0]), float(center[1])))
    for i, radius in enumerate(radii):
        if not _finite(radius):
            raise Invalid(f"bad radius {i}: expected a finite number, got {radius!r}")
        if radius <= 0:
            raise Invalid(f"bad radius {i}: radii must be > 0, got {radius!r}")
    return points, [float(r) for r in radii]


def _check_packing(centers: list[tuple[float, float]], radii: list[float]) -> None:
    """Every circle inside the unit square and no two overlapping, within TOLERANCE."""
    for i, ((x, y), r) in enumerate(zip(centers, radii, strict=True)):
        if min(x - r, y - r) < -TOLERANCE or max(x + r, y + r) > 1.0 + TOLERANCE:
            raise Invalid(f"outside the square: circle {i} at ({x:.6g}, {y:.6g}) with radius {r:.6g}")
    for i in range(N_CIRCLES):
        for j in range(i + 1, N_CIRCLES):
            gap = math.dist(centers[i], centers[j]) - radii[i] - radii[j]
            if gap < -TOLERANCE:
                raise Invalid(f"overlap: circles {i} and {j} overlap by {-gap:.3g}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

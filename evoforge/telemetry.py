"""Telemetry helper for evaluators and candidates: `report(step, name=value, ...)` appends one JSON line to
the file named by EVOFORGE_TELEMETRY (set by the Engineer per trial); without that variable it does nothing.

Standard library only, so any evaluator can import it.
"""

from __future__ import annotations

import json
import os
import time

ENV_VAR = "EVOFORGE_TELEMETRY"
RESERVED = ("t", "step")


def report(step: int | None = None, **metrics: float) -> None:
    """Record `metrics` (name=value, converted with float()) at `step`; a silent no-op outside a trial."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    line: dict[str, float | int | None] = {"t": time.time(), "step": None if step is None else int(step)}
    for name, value in metrics.items():
        if name in RESERVED:
            raise TypeError(f"telemetry metric name {name!r} is reserved; pick another name")
        try:
            line[name] = float(value)
        except (TypeError, ValueError) as exc:
            kind = type(value).__name__
            raise TypeError(f"telemetry metric {name!r} must be a number, got {kind}") from exc
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")

"""Reads the evaluator's JSON result and validates it: the objective metric must be a finite real number.

A result that breaks the contract raises `BadResult`, whose message says exactly what is wrong
("score is NaN", "metric 'score' missing from result: got keys [...]", ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class BadResult(Exception):
    """The evaluator's result breaks the contract; the message names the problem."""


def read_result_file(path: Path) -> Any | None:
    """The JSON value in `path`, or None when the file does not exist; unparseable JSON raises BadResult."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadResult(f"result file {path.name} is not valid JSON ({exc}): {text[:200]!r}") from exc


def last_json_line(text: str) -> dict[str, Any] | None:
    """The last line of `text` that parses as a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _jsonable(value: Any) -> Any:
    """The value with non-finite floats replaced by their names ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def metrics_of(result: Any) -> dict[str, Any]:
    """All entries of a dict result as strict-JSON-able metrics (empty for a non-dict result)."""
    return _jsonable(result) if isinstance(result, dict) else {}


def validate(result: Any, metric: str) -> tuple[float, dict[str, Any]]:
    """Check `result` and return (score, metrics); raises BadResult naming the problem."""
    if not isinstance(result, dict):
        raise BadResult(f"result must be a JSON object with a {metric!r} entry, got {type(result).__name__}: "
                        f"{json.dumps(result, allow_nan=True, default=repr)[:200]}")
    if metric not in result:
        raise BadResult(f"metric {metric!r} missing from result: got keys {sorted(result)}")
    value = result[metric]
    if isinstance(value, bool):
        raise BadResult(f"{metric} is a bool ({value}), expected a finite number")
    if not isinstance(value, int | float):
        raise BadResult(f"{metric} is a {type(value).__name__} ({value!r:.100}), expected a finite number")
    try:
        score = float(value)
    except OverflowError as exc:
        raise BadResult(f"{metric} is an integer too large for a float, expected a finite number") from exc
    if math.isnan(score):
        raise BadResult(f"{metric} is NaN")
    if math.isinf(score):
        raise BadResult(f"{metric} is {'+' if score > 0 else '-'}inf")
    return score, metrics_of(result)

"""Reads the evaluator's JSON result and validates it: the objective metric must be a finite real number.

A result that breaks the contract raises `BadResult`, whose message says exactly what is wrong
("score is NaN", "metric 'score' missing from result: got keys [...]", ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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


_TYPES = {"number": (int, float), "integer": (int,), "boolean": (bool,), "string": (str,)}


def check_schema(result: dict[str, Any], specs: Mapping[str, Any], stage: str | None) -> None:
    """Check the result's metrics against the task's `metrics` schema (MetricSpec: type, required, min, max,
    stages); raises BadResult naming the metric, what it is and what task.yaml asks."""
    for name, spec in specs.items():
        where = f"task.yaml metrics.{name}"
        if name not in result:
            if spec.required and (spec.stages is None or stage in spec.stages):
                raise BadResult(f"metric {name!r} missing from result ({where} requires it): got keys "
                                f"{sorted(result)}")
            continue
        value = result[name]
        is_bool = isinstance(value, bool)
        if not isinstance(value, _TYPES[spec.type]) or (is_bool and spec.type != "boolean"):
            raise BadResult(f"metric {name!r} is a {type(value).__name__} ({value!r:.80}), {where} asks for a "
                            f"{spec.type}")
        if spec.type in ("number", "integer"):
            number = float(value)
            if math.isnan(number):
                raise BadResult(f"metric {name!r} is NaN ({where} asks for a number)")
            if spec.min is not None and number < spec.min:
                raise BadResult(f"metric {name!r} = {value!r} is below its min {spec.min:g} ({where})")
            if spec.max is not None and number > spec.max:
                raise BadResult(f"metric {name!r} = {value!r} is above its max {spec.max:g} ({where})")

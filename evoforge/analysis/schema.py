"""The structured analysis the LLM must return (a pydantic model), and `parse_analysis`, which finds the JSON
object in an answer and validates it, or says exactly what is wrong so a repair round can quote it."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_LESSONS = 3
_SIGNS = {"+1": 1, "1": 1, "helped": 1, "positive": 1, "improved": 1, "better": 1,
          "-1": -1, "hurt": -1, "negative": -1, "worsened": -1, "worse": -1,
          "0": 0, "unknown": 0, "neutral": 0, "none": 0}


def _sign(value: Any) -> Any:
    if isinstance(value, str):
        return _SIGNS.get(value.strip().lower(), value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value in (-1, 0, 1):
        return int(value)
    return value


class LessonModel(BaseModel):
    """One lesson as the LLM states it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=3, max_length=200)
    content: str = Field(min_length=3)
    trigger: str = Field(min_length=3, description="symptoms in which the lesson applies")
    effect: int = Field(default=0, ge=-1, le=1, description="+1 helped, -1 hurt, 0 unknown")
    kind: str = Field(default="lesson", pattern="^(lesson|pitfall|heuristic)$")
    tags: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("effect", mode="before")
    @classmethod
    def _effect_sign(cls, value: Any) -> Any:
        return _sign(value)


class AnalysisModel(BaseModel):
    """The analysis: what changed → what happened (numbers) → why (a hypothesis) → lessons → next steps."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    what_changed: str = Field(min_length=3)
    what_happened: str = Field(min_length=3, description="with the measured numbers")
    why: str = Field(min_length=3, description="a causal hypothesis, marked as such")
    lesson: str = Field(default="", description="the main lesson in general terms ('' when none)")
    trigger: str = Field(default="", description="the symptoms in which the main lesson applies")
    next_steps: list[str] = Field(default_factory=list, max_length=6)
    lessons: list[LessonModel] = Field(default_factory=list, max_length=MAX_LESSONS)

    @field_validator("next_steps", mode="before")
    @classmethod
    def _steps_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SchemaError(ValueError):
    """An answer that holds no valid analysis; the message is what the repair round shows the model."""


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON object in `text`: a fenced block if any, else from the first '{' to its matching '}'."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    if not candidates:
        raise SchemaError("the answer contains no JSON object (expected one object starting with '{')")
    error = ""
    for chunk in candidates:
        chunk = chunk.strip()
        try:
            value, _ = json.JSONDecoder().raw_decode(chunk)
            return value
        except json.JSONDecodeError as exc:
            error = error or f"the JSON is not valid: {exc.msg} at line {exc.lineno} column {exc.colno}"
    raise SchemaError(error)


def describe_validation(exc: ValidationError) -> str:
    """One line per problem: 'field.path: message'."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"- {where}: {err['msg']}")
    return "the JSON does not match the schema:\n" + "\n".join(lines)


def parse_analysis(text: str) -> AnalysisModel:
    """The validated analysis in `text`; raises SchemaError saying what is wrong."""
    value = extract_json(text)
    if not isinstance(value, dict):
        raise SchemaError(f"the JSON must be an object with fields, not a {type(value).__name__}")
    try:
        return AnalysisModel.model_validate(value)
    except ValidationError as exc:
        raise SchemaError(describe_validation(exc)) from None

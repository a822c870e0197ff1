"""The offline analyzer: the deterministic digest plus one templated lesson (the constants a trial changed
and the measured effect, or the pitfall its failure showed); no network, no causal claims."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from evoforge.analysis._base import Analysis, AnalysisInput, Analyzer
from evoforge.analysis.lessons import ConstantChange, Lesson, constant_changes, describe_changes, offline_lesson
from evoforge.models import Trial


def finished_trial(inp: AnalysisInput) -> Trial:
    """`inp.trial` with the outcome's status, score, metrics and error (the record may not hold them yet)."""
    out = inp.outcome
    return replace(
        inp.trial,
        status=out.status,
        score=out.score,
        metrics=dict(out.metrics),
        error_class=out.error_class,
        error_message=out.error_message,
        seconds=out.seconds,
    )


def _next_steps(lesson: Lesson | None, changes: list[ConstantChange]) -> list[str]:
    if lesson is None or not changes or lesson.kind != "lesson":
        return []
    labels = ", ".join(c.label for c in changes[:3])
    if lesson.effect_sign > 0:
        return [f"move {labels} further in the same direction, in smaller steps"]
    return [f"move {labels} the other way, or leave them and change something else"]


def render_offline(digest_text: str, lesson: Lesson | None) -> str:
    """The digest, then the lesson and its trigger, as Markdown."""
    text = digest_text.strip()
    if lesson is not None:
        text += f"\n\n**{lesson.kind.capitalize()}:** {lesson.title}\n\n*Applies when:* {lesson.trigger}"
    return text


class OfflineAnalyzer(Analyzer):
    """Digest plus a templated lesson; writes no lesson when nothing meaningful happened (e.g. equal score)."""

    name = "offline"

    async def analyze(self, inp: AnalysisInput) -> Analysis:
        trial = finished_trial(inp)
        changes = constant_changes(inp.parent.code, trial.code) if inp.parent is not None else []
        lesson = offline_lesson(trial, inp.parent, inp.metric, inp.direction)
        what = describe_changes(changes) if changes else (trial.name or f"trial #{trial.id}")
        data: dict[str, Any] = {
            "what_changed": what,
            "what_happened": inp.digest.text.strip(),
            "why": "",
            "lesson": lesson.content if lesson else "",
            "trigger": lesson.trigger if lesson else "",
            "next_steps": _next_steps(lesson, changes),
        }
        return Analysis(
            text=render_offline(inp.digest.text, lesson),
            data=data,
            lessons=(lesson,) if lesson else (),
            source="offline",
        )

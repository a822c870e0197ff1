"""Lessons, the analyzer's reusable insights, and the offline analyzer's templated lesson: which constants a
trial changed against its parent and the measured effect, or the pitfall its failure revealed."""

from __future__ import annotations

import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

from evoforge.analysis.digest import fmt_number
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.programs import Literal, find_literals

MAX_NAMED_CHANGES = 3  # constants named in one lesson title; the rest are counted

NOISE = 1e-9  # relative score changes this small are floating-point noise, not an effect


@dataclass(frozen=True)
class Lesson:
    """One insight for the cognition base. `trigger`: the symptoms in which it applies, in the analyzer's words;
    `effect_sign`: +1 the change helped, -1 it hurt, 0 unknown; `kind`: "lesson" or "pitfall"."""

    title: str
    content: str
    trigger: str
    effect_sign: int
    tags: tuple[str, ...] = ()
    kind: str = "lesson"


@dataclass(frozen=True)
class ConstantChange:
    """A numeric literal whose text differs between parent and child, with the name it sits next to."""

    label: str
    old_text: str
    new_text: str
    old: float
    new: float

    def phrase(self) -> str:
        verb = "raising" if self.new > self.old else "lowering"
        return f"{verb} {self.label} {self.old_text}→{self.new_text}"


def _change(old: Literal, new: Literal) -> ConstantChange:
    return ConstantChange(new.label, old.text, new.text, old.value, new.value)


def constant_changes(parent_code: str, child_code: str) -> list[ConstantChange]:
    """Literals changed from parent to child: paired in order when both have as many, else the named
    `UPPER_CASE` constants present once in each. Empty when either program is not tokenizable Python."""
    try:
        old, new = find_literals(parent_code), find_literals(child_code)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []
    if len(old) == len(new):
        return [_change(a, b) for a, b in zip(old, new, strict=True) if a.text != b.text]

    def unique(literals: list[Literal]) -> dict[str, Literal]:
        labels = [lit.label for lit in literals if lit.constant]
        return {lit.label: lit for lit in literals if lit.constant and labels.count(lit.label) == 1}

    named_old, named_new = unique(old), unique(new)
    return [
        _change(named_old[label], lit)
        for label, lit in named_new.items()
        if label in named_old and named_old[label].text != lit.text
    ]


def describe_changes(changes: Sequence[ConstantChange]) -> str:
    """'raising A 1→2 and lowering B 3→2' (at most MAX_NAMED_CHANGES named, the rest counted)."""
    named = [c.phrase() for c in changes[:MAX_NAMED_CHANGES]]
    extra = len(changes) - len(named)
    text = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return text + (f" (and {extra} more literal{'s' * (extra > 1)})" if extra else "")


def effect_phrase(new: float, old: float, direction: Direction, metric: str) -> tuple[str, int]:
    """'improved score by +0.021 (+1.7%)' and its sign (+1 better, -1 worse, 0 equal)."""
    delta = new - old
    if delta == 0:
        return f"left {metric} unchanged at {fmt_number(old)}", 0
    sign = 1 if direction.better(new, old) else -1
    pct = delta / abs(old) * 100 if old != 0 else None
    rel = "" if pct is None else f" ({pct:+.0f}%)" if abs(pct) >= 100 else f" ({pct:+.2g}%)"
    verb = "improved" if sign > 0 else "worsened"
    return f"{verb} {metric} by {delta:+.3g}{rel}", sign


def _where(changes: Sequence[ConstantChange]) -> str:
    return ", ".join(f"{c.label} = {c.old_text}" for c in changes[:MAX_NAMED_CHANGES])


def _what(trial: Trial, changes: Sequence[ConstantChange]) -> str:
    if changes:
        return describe_changes(changes)
    return f"the change '{trial.name}'" if trial.name else f"the change in trial #{trial.id}"


def _tags(changes: Sequence[ConstantChange], *extra: str) -> tuple[str, ...]:
    labels = [c.label for c in changes[:MAX_NAMED_CHANGES] if not c.label.startswith("line ")]
    return tuple(dict.fromkeys([*extra, *labels]))


def success_lesson(
    trial: Trial, parent: Trial, changes: Sequence[ConstantChange], metric: str, direction: Direction
) -> Lesson | None:
    """The measured effect of `trial`'s change against `parent`; None when either score is missing or equal
    (within floating-point noise: a relative change under 1e-9 teaches nothing)."""
    if trial.score is None or parent.score is None:
        return None
    if abs(trial.score - parent.score) <= NOISE * max(1.0, abs(parent.score)):
        return None
    effect, sign = effect_phrase(trial.score, parent.score, direction, metric)
    if sign == 0:
        return None
    what = _what(trial, changes)
    title = f"{what} {effect}"
    content = (
        f"Trial #{trial.id} against its parent #{parent.id}: {what}; {metric} went "
        f"{fmt_number(parent.score)} → {fmt_number(trial.score)}, so it {effect}. "
        "One measured comparison, not a proof of cause."
    )
    if not changes and trial.motivation:
        content += f" Its motivation: {trial.motivation.strip()[:300]}"
    near = f"{metric} near {fmt_number(parent.score)}"
    if sign > 0:
        trigger = f"{metric} plateaus near {fmt_number(parent.score)}" + (f" with {_where(changes)}" if changes else "")
    else:
        trigger = f"about to change {_where(changes)} ({near})" if changes else f"{near}, trying '{trial.name}'"
    kind_tag = "constants" if changes else "structural"
    return Lesson(title=title, content=content, trigger=trigger, effect_sign=sign, tags=_tags(changes, kind_tag))


def failure_lesson(trial: Trial, parent: Trial | None, changes: Sequence[ConstantChange]) -> Lesson:
    """A pitfall from a failed trial (its error class and first error line), or a lesson from a pruned one."""
    cls = trial.error_class or trial.status.value
    first_line = next((ln.strip() for ln in (trial.error_message or "").splitlines() if ln.strip()), "")
    last_line = next((ln.strip() for ln in reversed((trial.error_message or "").splitlines()) if ln.strip()), "")
    what = _what(trial, changes)
    parent_part = f" (parent #{parent.id} ran fine)" if parent is not None and parent.scored else ""
    if trial.status is TrialStatus.PRUNED:
        title = f"{what} was stopped early ({cls})"
        content = f"Trial #{trial.id}: {what}; a gate stopped it as unpromising ({cls}){parent_part}."
        return Lesson(title, content, f"{cls} after {what}", -1, _tags(changes, "pruned", cls))
    detail = last_line or first_line
    title = f"{what} led to {cls}"
    content = f"Trial #{trial.id}: {what}; it failed with {cls}{parent_part}."
    if detail:
        content += f" Error: {detail[:300]}"
    trigger = f"{cls}: {detail[:120]}" if detail else f"{cls} after {what}"
    return Lesson(title, content, trigger, -1, _tags(changes, "failure", cls), kind="pitfall")


def offline_lesson(trial: Trial, parent: Trial | None, metric: str, direction: Direction) -> Lesson | None:
    """The templated lesson of one finished trial, or None when there is nothing meaningful to say
    (no parent to compare with, an equal score, a trial that is neither scored nor failed nor pruned)."""
    changes = constant_changes(parent.code, trial.code) if parent is not None else []
    if trial.status in (TrialStatus.FAILED, TrialStatus.PRUNED):
        return failure_lesson(trial, parent, changes)
    if trial.status is TrialStatus.SUCCEEDED and parent is not None:
        return success_lesson(trial, parent, changes, metric, direction)
    return None

"""The offline researcher: tunes the numeric literals of the parent program, with no network and no model.

Named constants (top-level `UPPER_CASE = ...` assignments) are tuned in most proposals, since literals
buried in expressions are more often structure than parameters. Floats move multiplicatively (zero moves
additively) by a step whose scale follows the 1/5th success rule over the run's recent offline trials;
positive ints move by ±1 in a few proposals; some proposals cross the parent's literals with an
inspiration's. Every proposal differs from the parent's code and stays tokenizable.
"""

from __future__ import annotations

import math
import random
import tokenize

from evoforge.models import Proposal, Trial
from evoforge.programs import Literal, find_literals
from evoforge.research.base import Proposer
from evoforge.research.context import ResearchContext

BASE_SCALE = 0.2
MIN_SCALE, MAX_SCALE = 0.005, 1.0
SUCCESS_FACTOR, FAILURE_FACTOR = math.exp(1 / 3), math.exp(-1 / 12)  # stationary at a 1/5 success rate
INT_RATE = 0.1
CROSSOVER_RATE = 0.2
CONSTANT_RATE = 0.85  # share of proposals that touch only named constants, when the program has any
MAX_CHANGES = 3
MOTIVATION = "offline proposer: tunes numeric constants only; design changes need an LLM"


def splice(code: str, changes: list[tuple[Literal, str]]) -> str:
    """`code` with each literal replaced by its new text."""
    for lit, text in sorted(changes, key=lambda c: c[0].start, reverse=True):
        code = code[: lit.start] + text + code[lit.end :]
    return code


def format_float(value: float, old: Literal) -> str | None:
    """A float literal for `value`, as precise as `old` (3 digits at least), or None if it rounds to `old`."""
    digits = max(3, sum(c.isdigit() for c in old.text.lower().split("e")[0].lstrip("0.")))
    for precision in range(digits, digits + 3):
        text = f"{value:.{precision}g}"
        if "." not in text and "e" not in text:
            text += ".0"
        if float(text) != old.value:
            return text
    return None


def mutate(lit: Literal, scale: float, rng: random.Random) -> str:
    """New text for one literal: ints ±1 (a positive int stays positive), floats by a random step."""
    if not lit.is_float:
        value = int(lit.value)
        return str(value + 1 if value <= 1 else value + rng.choice((-1, 1)))
    for attempt in range(20):  # a step too small to show in the literal's precision is drawn again, larger
        step = scale * (1 + attempt)
        if lit.value == 0:
            new = abs(rng.gauss(0.0, step))
        else:
            new = lit.value * math.exp(max(-20.0, min(20.0, rng.gauss(0.0, step))))
        text = format_float(new, lit)
        if text is not None:
            return text
    return repr(lit.value * 2 if lit.value else 1.0)


def describe(changes: list[tuple[Literal, str]]) -> str:
    return ", ".join(f"{lit.label} {lit.text}→{text}" for lit, text in changes)


class OfflineProposer(Proposer):
    """Numeric-constant tuning with adaptive steps; seeded, so a run with the same seed proposes the same."""

    name = "offline"
    tunes_constants = True

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    async def propose(self, ctx: ResearchContext) -> Proposal:
        code = ctx.parent.code
        try:
            literals = find_literals(code)
        except (tokenize.TokenError, SyntaxError) as exc:
            return self._error(f"offline proposer: the parent program is not tokenizable Python ({exc})")
        tunable = [lit for lit in literals if lit.is_float or lit.value > 0]
        if not tunable:
            return self._error("offline proposer: the parent program has no numeric literals to tune")
        constants = [lit for lit in tunable if lit.constant]
        source = constants if constants and self.rng.random() < CONSTANT_RATE else tunable
        floats = [lit for lit in source if lit.is_float]
        ints = [lit for lit in source if not lit.is_float]
        scale = step_scale(ctx)
        if self.rng.random() < CROSSOVER_RATE:
            crossed = self._crossover(ctx, literals)
            if crossed is not None:
                return crossed
        pool = floats + ints if not floats or self.rng.random() < INT_RATE else floats
        chosen = sorted(
            self.rng.sample(pool, self.rng.randint(1, min(MAX_CHANGES, len(pool)))), key=lambda lit: lit.start
        )
        changes = [(lit, mutate(lit, scale, self.rng)) for lit in chosen]
        return self._proposal(
            f"tune: {describe(changes)}",
            f"{MOTIVATION} (step scale {scale:.3g}).",
            splice(code, changes),
            code,
        )

    def _crossover(self, ctx: ResearchContext, literals: list[Literal]) -> Proposal | None:
        """The parent's program with some literals taken from an inspiration with as many literals."""
        mates: list[tuple[Trial, list[Literal]]] = []
        for trial in ctx.inspirations:
            try:
                theirs = find_literals(trial.code)
            except (tokenize.TokenError, SyntaxError):
                continue
            differ = [i for i, (a, b) in enumerate(zip(literals, theirs, strict=False)) if a.text != b.text]
            if len(theirs) == len(literals) and differ:
                mates.append((trial, theirs))
        if not mates:
            return None
        mate, theirs = self.rng.choice(mates)
        differ = [i for i, (a, b) in enumerate(zip(literals, theirs, strict=True)) if a.text != b.text]
        taken = [i for i in differ if self.rng.random() < 0.5] or [self.rng.choice(differ)]
        changes = [(literals[i], theirs[i].text) for i in taken]
        name = f"crossover with #{mate.id}: {describe(changes)}"
        motivation = f"{MOTIVATION} (crossover: {len(changes)} constant(s) taken from trial #{mate.id})."
        return self._proposal(name, motivation, splice(ctx.parent.code, changes), ctx.parent.code)

    def _proposal(self, name: str, motivation: str, code: str, parent_code: str) -> Proposal:
        if code == parent_code:  # cannot happen: every change alters a literal's text
            return self._error("offline proposer: produced no change")
        if len(name) > 100:
            name = name[:99] + "…"
        return Proposal(name=name, motivation=motivation, code=code, proposer=self.name)

    def _error(self, error: str) -> Proposal:
        return Proposal(
            name="offline: nothing to tune", motivation=MOTIVATION, code="", proposer=self.name, error=error
        )


def step_scale(ctx: ResearchContext) -> float:
    """The 1/5th success rule replayed over `ctx.recent`: ×e^(1/3) per offline child that beat its parent,
    ×e^(-1/12) per one that did not (children whose parent's score is unknown are skipped)."""
    known = (ctx.parent, *ctx.inspirations, *ctx.failures, *ctx.recent)
    scores = {t.id: t.score for t in known if t.scored and t.score is not None}
    scale = BASE_SCALE
    for trial in ctx.recent:
        if trial.proposer != "offline" or not trial.status.finished or not trial.parent_ids:
            continue
        parent_score = scores.get(trial.parent_ids[0])
        if parent_score is None:
            continue
        won = trial.scored and trial.score is not None and ctx.direction.better(trial.score, parent_score)
        scale *= SUCCESS_FACTOR if won else FAILURE_FACTOR
    return min(MAX_SCALE, max(MIN_SCALE, scale))

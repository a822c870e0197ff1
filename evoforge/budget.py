"""Budgets of a run: dollars, tokens, wall-clock and evaluation seconds, checked against committed spend.

Committed spend is what was spent plus what the work already in flight is expected to spend, so the loop stops
proposing before a cap is crossed (within about one call's cost), lets running trials finish, and says which
budget stopped it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from evoforge.models import LLMCall


@dataclass(frozen=True)
class Budgets:
    """The caps (None: no cap)."""

    usd: float | None = None
    tokens: int | None = None
    wall_s: float | None = None
    eval_s: float | None = None


@dataclass
class Spend:
    """What was spent so far (restored from the record on resume)."""

    usd: float = 0.0
    tokens: int = 0
    eval_s: float = 0.0
    wall_s_before: float = 0.0  # wall-clock seconds of earlier sessions of this run
    proposals_priced: int = 0  # proposals whose LLM calls are in `usd` / `tokens`


@dataclass
class BudgetTracker:
    """Answers "may one more trial start?" given the trials in flight."""

    budgets: Budgets
    spend: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)

    def wall_s(self) -> float:
        return self.spend.wall_s_before + (time.monotonic() - self.started)

    def add_calls(self, calls: Iterable[LLMCall], *, proposal: bool) -> None:
        calls = list(calls)
        self.spend.usd += sum(c.cost_usd for c in calls)
        self.spend.tokens += sum(c.tokens_in + c.tokens_out for c in calls)
        if proposal and calls:
            self.spend.proposals_priced += 1

    def add_evaluation(self, seconds: float) -> None:
        self.spend.eval_s += seconds

    def _per_proposal(self) -> tuple[float, float]:
        n = self.spend.proposals_priced
        return (self.spend.usd / n, self.spend.tokens / n) if n else (0.0, 0.0)

    def stop_reason(self, in_flight: int, mean_eval_s: float = 0.0) -> str | None:
        """Why no new trial may start, or None. `in_flight`: trials started and not finished."""
        usd_each, tokens_each = self._per_proposal()
        ahead = in_flight + 1  # the work in flight plus the trial about to start
        b, s = self.budgets, self.spend
        if b.usd is not None and s.usd + ahead * usd_each >= b.usd:
            return f"dollar budget: ${s.usd:.4f} spent, ~${ahead * usd_each:.4f} committed, cap ${b.usd:g}"
        if b.tokens is not None and s.tokens + ahead * tokens_each >= b.tokens:
            return f"token budget: {s.tokens} tokens spent, ~{int(ahead * tokens_each)} committed, cap {b.tokens}"
        if b.wall_s is not None and self.wall_s() >= b.wall_s:
            return f"wall-clock budget: {self.wall_s():.0f}s elapsed, cap {b.wall_s:g}s"
        if b.eval_s is not None and s.eval_s + ahead * mean_eval_s >= b.eval_s:
            return f"evaluation budget: {s.eval_s:.1f}s spent, ~{ahead * mean_eval_s:.1f}s committed, cap {b.eval_s:g}s"
        return None

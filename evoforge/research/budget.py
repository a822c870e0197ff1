"""Token budgets for the researcher's prompt: estimate tokens (~4 characters each), share what the model's context
leaves among the sections, and trim a section by dropping whole items before cutting any item's text.

The parent program is never cut: when it alone exceeds its budget the prompt says so and shows it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from evoforge.config import PromptBudget

CHARS_PER_TOKEN = 4
MIN_SHRUNK_TOKENS = 64  # an item cut below this says too little to be worth showing
CUT_MARK = "\n… (cut to fit the prompt budget)"
SECTIONS = ("inspirations", "knowledge", "history")

T = TypeVar("T")


def estimate_tokens(text: str) -> int:
    """A rough token count: characters / 4, rounded up (no tokenizer needed, errs on the generous side)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def truncate_to_tokens(text: str, tokens: int) -> str:
    """`text` cut to about `tokens` tokens, with a visible mark where it was cut (unchanged when it fits)."""
    if estimate_tokens(text) <= tokens:
        return text
    keep = max(0, tokens * CHARS_PER_TOKEN - len(CUT_MARK))
    return text[:keep].rstrip() + CUT_MARK


@dataclass(frozen=True)
class Plan:
    """Token limits for one prompt: per trimmable section, and the note to show when the program is over budget."""

    inspirations: int
    knowledge: int
    history: int
    program_note: str = ""

    def limit(self, section: str) -> int:
        return int(getattr(self, section))


def plan_prompt(budget: PromptBudget, *, reply_tokens: int, fixed_tokens: int, program_tokens: int) -> Plan:
    """Share the prompt's room among the sections.

    The prompt may use `budget.context_tokens - reply_tokens`; the fixed parts (problem, instructions) and the
    program come first; what is left goes to the sections, each at most its own budget, scaled down together
    when they do not all fit."""
    room = budget.context_tokens - reply_tokens
    left = max(0, room - fixed_tokens - program_tokens)
    wanted = {section: int(getattr(budget, section)) for section in SECTIONS}
    total = sum(wanted.values())
    if total > left:
        scale = left / total if total else 0.0
        wanted = {section: math.floor(tokens * scale) for section, tokens in wanted.items()}
    note = ""
    if program_tokens > budget.program or program_tokens + fixed_tokens > room:
        note = (
            f"The current program is long (about {program_tokens} tokens; the prompt's program budget is "
            f"{budget.program} and the room left for the prompt is {max(0, room - fixed_tokens)}). It is shown "
            "whole, so other sections were shortened: keep your changes small and targeted."
        )
    return Plan(**wanted, program_note=note)


def fit_items(
    items: Sequence[T], cost: Callable[[T], int], limit: int, shrink: Callable[[T, int], T] | None = None
) -> tuple[list[T], int]:
    """The leading `items` whose costs fit within `limit` tokens, and how many were left out.

    Whole items go first; only when not even the first item fits is its text cut (with `shrink(item, tokens)`),
    and only if at least MIN_SHRUNK_TOKENS remain for it."""
    kept: list[T] = []
    used = 0
    for item in items:
        tokens = cost(item)
        if used + tokens > limit:
            break
        kept.append(item)
        used += tokens
    if not kept and items and shrink is not None and limit >= MIN_SHRUNK_TOKENS:
        kept.append(shrink(items[0], limit))
    return kept, len(items) - len(kept)

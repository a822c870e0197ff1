"""The price table: US dollars per million input/output tokens per model, with defaults the user can override.

Lookup order: the model's own `price_in`/`price_out`, then `llm.prices` in task.yaml (keyed by "provider/model"
or bare model id), then the defaults below (a dated id such as "gpt-4o-2024-08-06" finds "gpt-4o"; "gpt-4o-mini"
is its own entry). Local models are free; any other unknown model costs 0 and is warned about once per process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from evoforge.config import ModelSpec, Price, split_name
from evoforge.config.llm import LOCAL

log = logging.getLogger("evoforge.llm")

# List prices in USD per million tokens (input, output), as published by the providers in 2025.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    # Google (through its OpenAI-compatible endpoint)
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
}

VERSION_SUFFIX = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
FREE = Price(input=0.0, output=0.0)
_warned: set[str] = set()


def _dated_match(model_id: str, table: Mapping[str, Price]) -> Price | None:
    """The entry for `model_id` itself or for it less a date/"latest" suffix ("claude-3-5-haiku-20241022"); a newer
    version ("claude-opus-4-6") does not inherit an older one's price."""
    best: str | None = None
    for key in table:
        if model_id == key or (model_id.startswith(key + "-") and VERSION_SUFFIX.match(model_id[len(key) + 1:])):
            if best is None or len(key) > len(best):
                best = key
    return table[best] if best is not None else None


def default_table() -> dict[str, Price]:
    return {name: Price(input=i, output=o) for name, (i, o) in DEFAULT_PRICES.items()}


def price_for(spec: ModelSpec, overrides: Mapping[str, Price] | None = None) -> Price:
    """The price of `spec`'s tokens: its own, the user's table, the defaults, else 0 (warned once)."""
    own = spec.price()
    if own is not None:
        return own
    provider, model_id = split_name(spec.name)
    user = dict(overrides or {})
    for key in (spec.name, f"{provider}/{model_id}", model_id):
        if key in user:
            return user[key]
    found = _dated_match(model_id, user) or _dated_match(model_id, default_table())
    if found is not None:
        return found
    if provider != LOCAL and spec.name not in _warned:
        _warned.add(spec.name)
        log.warning(
            "no price known for model %r: its calls count as $0; set llm.prices[%r] (or price_in/price_out on "
            "the model) in task.yaml to count them", spec.name, spec.name,
        )
    return FREE

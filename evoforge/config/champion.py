"""task.yaml's `champion` section: how a trial earns the title of best — re-evaluated with other seeds, and better
than the champion by more than the noise."""

from __future__ import annotations

from pydantic import Field

from evoforge.config._base import Strict


class ChampionSettings(Strict):
    seeded: bool = Field(default=False, description="the evaluator reads a seed (EVOFORGE_SEED, ctx['seed'], "
                         "{seed} in a command) and its score varies with it; a command with {seed} implies it")
    repeats: int | None = Field(default=None, ge=1, le=100, description="evaluations behind a champion, its first "
                                "one included (default: 3 for a seeded evaluator, else 1)")

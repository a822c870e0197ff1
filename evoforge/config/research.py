"""The `research:` section of task.yaml: what the researcher is shown and asked for, and how parents are sampled
(UCB1, weighted, islands, MAP-Elites)."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from evoforge.config._base import Strict


class IslandSettings(Strict):
    """Sub-populations on a ring: every `migration_interval` new trials, the best `migration_rate` share of
    island i joins island i+1 too. `policy` picks the parent inside an island."""

    count: int = Field(default=1, ge=1, le=64, description="number of islands (1: a single population)")
    migration_interval: int = Field(default=10, ge=1, description="new trials between two migrations")
    migration_rate: float = Field(default=0.1, ge=0.0, le=1.0, description="share of an island's best that moves")
    policy: str = Field(
        default="ucb1", pattern="^(greedy|random|ucb1|weighted)$", description="how the parent is picked in an island"
    )


class FeatureSpec(Strict):
    """One MAP-Elites dimension: a metric the evaluator returns (or code_length / code_lines), cut into `bins`
    equal bins between `min` and `max`; values outside fall into the edge bins."""

    name: str = Field(min_length=1)
    bins: int = Field(default=10, ge=1, le=1000)
    min: float = 0.0
    max: float = 1.0

    @model_validator(mode="after")
    def _bounds(self) -> FeatureSpec:
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.max <= self.min:
            raise ValueError(f"feature {self.name!r}: need finite min < max, got min={self.min}, max={self.max}")
        return self


class MapElitesSettings(Strict):
    """The MAP-Elites grid: one elite (best score) per cell of the feature dimensions (per island if count > 1)."""

    features: list[FeatureSpec] = Field(
        default_factory=lambda: [
            FeatureSpec(name="code_length", bins=10, min=0, max=20000),
        ],
        min_length=1,
        max_length=4,
    )


class WeightedSettings(Strict):
    """Weight of a parent: sigmoid(sharpness * (score - median) / spread) / (1 + children ** child_penalty)."""

    sharpness: float = Field(default=1.0, gt=0.0, description="how strongly scores above the median are favoured")
    child_penalty: float = Field(default=1.0, ge=0.0, description="exponent on the child count (0: no penalty)")


class PatchWeights(Strict):
    """How often each kind of answer is asked for: SEARCH/REPLACE edits, a full rewrite, or a crossover of the
    parent with a second program (weights, need not sum to 1)."""

    diff: float = Field(default=1.0, ge=0.0)
    full: float = Field(default=0.0, ge=0.0)
    crossover: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> PatchWeights:
        if self.diff + self.full + self.crossover <= 0:
            raise ValueError("research.patch_types: give at least one of diff, full, crossover a weight > 0")
        return self


class PromptBudget(Strict):
    """Token budgets (~4 characters a token) of the researcher's prompt sections; the whole prompt also stays
    within `context_tokens` less the reply's `llm.max_tokens`. The parent program is never cut."""

    program: int = Field(default=8000, gt=0, description="the current program (over it: a note, never a cut)")
    inspirations: int = Field(default=4000, ge=0, description="other programs shown for ideas")
    knowledge: int = Field(default=1500, ge=0, description="knowledge notes and the agenda")
    history: int = Field(default=1000, ge=0, description="recent failures and recently tried lines")
    context_tokens: int = Field(default=32768, gt=0, description="the model's context window")


class ResearchSettings(Strict):
    num_inspirations: int = Field(default=2, ge=0)
    num_failures: int = Field(default=3, ge=0)
    sampler: str = Field(default="ucb1", pattern="^(greedy|random|ucb1|weighted|islands|map_elites)$")
    population: int | None = Field(default=8, ge=1, description="UCB1 arms: the best N trials (null: all)")
    exploration: float = Field(default=1.0, ge=0.0, description="UCB1 exploration constant")
    edit_format: str = Field(default="diff", pattern="^(diff|full)$")
    islands: IslandSettings = IslandSettings()
    map_elites: MapElitesSettings = MapElitesSettings()
    weighted: WeightedSettings = WeightedSettings()
    patch_types: PatchWeights | None = Field(default=None, description="null: always edit_format")
    prompt_budget: PromptBudget = PromptBudget()
    seed_repairs: int = Field(default=2, ge=0, description="a failing seed: how many times an LLM researcher is "
                              "asked to repair it from its error (each a trial) before the run stops")

"""Settings of the island, MAP-Elites and weighted samplers, as `task.yaml`'s `research` section validates them."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUILTIN_FEATURES = ("code_length", "code_lines")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IslandSettings(_Strict):
    """Sub-populations on a ring: every `migration_interval` new trials, the best `migration_rate` share of
    island i joins island i+1 too. `policy` picks the parent inside an island."""

    count: int = Field(default=1, ge=1, le=64, description="number of islands (1: a single population)")
    migration_interval: int = Field(default=10, ge=1, description="new trials between two migrations")
    migration_rate: float = Field(default=0.1, ge=0.0, le=1.0, description="share of an island's best that moves")
    policy: str = Field(
        default="ucb1", pattern="^(greedy|random|ucb1|weighted)$", description="how the parent is picked in an island"
    )


class FeatureSpec(_Strict):
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


class MapElitesSettings(_Strict):
    """The MAP-Elites grid: one elite (best score) per cell of the feature dimensions (per island if count > 1)."""

    features: list[FeatureSpec] = Field(
        default_factory=lambda: [
            FeatureSpec(name="code_length", bins=10, min=0, max=20000),
        ],
        min_length=1,
        max_length=4,
    )


class WeightedSettings(_Strict):
    """Weight of a parent: sigmoid(sharpness * (score - median) / spread) / (1 + children ** child_penalty)."""

    sharpness: float = Field(default=1.0, gt=0.0, description="how strongly scores above the median are favoured")
    child_penalty: float = Field(default=1.0, ge=0.0, description="exponent on the child count (0: no penalty)")

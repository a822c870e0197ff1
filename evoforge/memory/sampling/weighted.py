"""Weighted parent sampling: good trials are likely parents, prolific ones less so (seeded).

The rule, for a scored trial i:
    z_i = sharpness * sign * (score_i - median) / spread      (spread: the scores' mean absolute deviation; 1 if 0)
    w_i = sigmoid(z_i) / (1 + children_i ** child_penalty)
with sign +1 when maximising, -1 when minimising, children_i counting i's children of any status plus `pending[i]`.
The parent is drawn with probability proportional to w_i.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from evoforge.memory.sampling._base import Sampler, count_children, scored_trials
from evoforge.models import Direction, Trial


class WeightedSampler(Sampler):
    """Draws parents proportionally to `weights`; `sharpness` and `child_penalty` as in the module's rule."""

    name = "weighted"

    def __init__(self, seed: int | None = None, sharpness: float = 1.0, child_penalty: float = 1.0) -> None:
        super().__init__(seed)
        if not (math.isfinite(sharpness) and sharpness > 0):
            raise ValueError(f"weighted sampler sharpness must be a finite number > 0, got {sharpness!r}")
        if not (math.isfinite(child_penalty) and child_penalty >= 0):
            raise ValueError(f"weighted sampler child_penalty must be a finite number >= 0, got {child_penalty!r}")
        self.sharpness = sharpness
        self.child_penalty = child_penalty

    def weights(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> dict[int, float]:
        """The (unnormalised) weight of every scored trial, by id (exposed for tests and the dashboard)."""
        scored = scored_trials(trials)
        scores = [float(trial.score or 0.0) for trial in scored]
        median = statistics.median(scores)
        spread = sum(abs(score - median) for score in scores) / len(scores) or 1.0
        children = count_children(trials)
        pending = pending or {}
        result: dict[int, float] = {}
        for trial, score in zip(scored, scores, strict=True):
            z = self.sharpness * direction.sign() * (score - median) / spread
            n = children[trial.id] + max(0, pending.get(trial.id, 0))
            result[trial.id] = _sigmoid(z) / (1.0 + n**self.child_penalty)
        return result

    def state(self, trials: Sequence[Trial] | None = None, direction: Direction | None = None) -> dict[str, Any]:
        """Picks made, and with the run's trials every scored trial's weight (what the next pick reads)."""
        state = super().state()
        if trials is not None and direction is not None and any(t.scored for t in trials):
            state["weights"] = self.weights(trials, direction)
        return state

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        weights = self.weights(trials, direction, pending)
        by_id = {trial.id: trial for trial in scored_trials(trials)}
        ids = sorted(weights)
        chosen = self.rng.choices(ids, weights=[weights[i] for i in ids], k=1)[0]
        self.why = {"reason": "weighted draw", "share": round(weights[chosen] / sum(weights.values()), 6)}
        return by_id[chosen]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)

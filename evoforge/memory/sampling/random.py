"""Random parent sampling: every scored trial is equally likely, whatever its score (seeded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evoforge.memory.sampling._base import Sampler, scored_trials
from evoforge.models import Direction, Trial


class RandomSampler(Sampler):
    """Pure exploration, a baseline; `pending` is ignored. Same seed and same trials give the same picks."""

    name = "random"

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.why = {"reason": "uniform draw"}
        return self.rng.choice(scored_trials(trials))

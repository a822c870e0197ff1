"""Greedy parent sampling: always build on the best scored trial (ties: lowest id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evoforge.memory.sampling._base import Sampler, best_n, require_scored
from evoforge.models import Direction, Trial


class GreedySampler(Sampler):
    """Pure exploitation; `pending` is ignored."""

    name = "greedy"

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        require_scored(trials)
        self.why = {"reason": "best score"}
        return best_n(trials, direction, 1)[0]

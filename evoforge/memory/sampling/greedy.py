"""Greedy parent sampling: always build on the best scored trial (ties: lowest id)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evoforge.memory.sampling._base import Sampler, ranked, scored_trials
from evoforge.models import Direction, Trial


class GreedySampler(Sampler):
    """Pure exploitation; `pending` is ignored."""

    name = "greedy"

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        self.why = {"reason": "best score"}
        return ranked(scored_trials(trials), direction)[0]

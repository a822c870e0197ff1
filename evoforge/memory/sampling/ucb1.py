"""UCB1 parent sampling: the elite trials are arms; pick the one whose lineage pays best, plus a bonus for
arms tried rarely, so good programs are exploited while none starves.

The arms are the `population` best scored trials (all of them when `population` is None): a poor trial never
becomes an arm, so "unvisited first" expands each new elite once instead of walking down every weak leaf.

The rule, for arm i (a scored trial):
    n_i   = 1 + (trials whose parent_ids hold i, any status: failed children count) + pending[i]
    v_i   = mean of {i's own normalised score} ∪ {normalised scores of i's scored children}
    UCB_i = v_i + c * sqrt(ln(N) / n_i),  N = sum of n_i
Scores are normalised to [0, 1] by the min and max of scored trials, 1 being best in the objective's direction
(all equal: 0.5). Arms with neither children nor pending children are tried first, best score first.
Ties go to the lowest id. Non-finite scores never enter: such trials are not scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evoforge.memory.sampling._base import Sampler, pool_for, scored_trials
from evoforge.memory.sampling.pool import rank_key
from evoforge.models import Direction, Trial


class UCB1Sampler(Sampler):
    """UCB1 over the elite trials; `exploration` is the constant c (>= 0; 0 is greedy on lineage value),
    `population` the number of best trials that are arms (None: every scored trial)."""

    name = "ucb1"

    def __init__(self, seed: int | None = None, exploration: float = 1.0, population: int | None = None) -> None:
        super().__init__(seed)
        if not math.isfinite(exploration) or exploration < 0:
            raise ValueError(f"UCB1 exploration constant must be a finite number >= 0, got {exploration!r}")
        if population is not None and population < 1:
            raise ValueError(f"UCB1 population must be >= 1, got {population!r}")
        self.exploration = exploration
        self.population = population

    def arms(self, trials: Sequence[Trial], direction: Direction) -> list[Trial]:
        """The elite: the `population` best scored trials, in id order."""
        elite = pool_for(trials, direction).best(self.population)
        if not elite:
            scored_trials(trials)  # raises the common "no scored trial" error
        return sorted(elite, key=lambda arm: arm.id)

    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        pool = pool_for(trials, direction)
        arms = self.arms(pool, direction)
        pending = pending or {}
        unvisited = [arm for arm in arms if pool.children(arm.id) == 0 and pending.get(arm.id, 0) <= 0]
        if unvisited:
            self.why = {"reason": "untried elite"}
            return min(unvisited, key=lambda arm: rank_key(arm, direction))  # the best (= ranked(unvisited)[0])
        scores = self.ucb_scores(pool, direction, pending)
        parent = max(arms, key=lambda arm: (scores[arm.id], -arm.id))
        self.why = {"reason": "highest UCB", "ucb": round(scores[parent.id], 6)}
        return parent

    def state(self, trials: Sequence[Trial] | None = None, direction: Direction | None = None) -> dict[str, Any]:
        """Picks made, and with the run's trials the UCB value of every arm (what the next pick reads)."""
        state = super().state()
        if trials is not None and direction is not None and pool_for(trials, direction).n_scored:
            state["ucb"] = self.ucb_scores(trials, direction)
        return state

    def ucb_scores(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> dict[int, float]:
        """UCB value of every arm, by trial id (exposed for tests and the dashboard). Reads the pool's running
        sums, so its cost depends on the number of arms, not of trials."""
        pool = pool_for(trials, direction)
        arms = self.arms(pool, direction)
        pending = pending or {}
        normalised_sum = _normaliser(*pool.score_range(), direction)
        visits = {arm.id: 1 + pool.children(arm.id) + max(0, pending.get(arm.id, 0)) for arm in arms}
        log_total = math.log(sum(visits.values()))
        result: dict[int, float] = {}
        for arm in arms:
            child_sum, child_n = pool.child_scores(arm.id)
            value = (normalised_sum(float(arm.score or 0.0), 1) + normalised_sum(child_sum, child_n)) / (1 + child_n)
            result[arm.id] = value + self.exploration * math.sqrt(log_total / visits[arm.id])
        return result


def _normaliser(low: float, high: float, direction: Direction) -> Callable[[float, int], float]:
    """Maps (sum of n raw scores, n) to the sum of their normalised scores: each is mapped to [0, 1] by the run's
    lowest and highest score, 1 being best (all equal: 0.5). The map is affine, so a sum maps as a whole."""
    if high == low:
        return lambda _total, n: 0.5 * n
    span = high - low
    if direction is Direction.MAXIMIZE:
        return lambda total, n: (total - n * low) / span
    return lambda total, n: (n * high - total) / span

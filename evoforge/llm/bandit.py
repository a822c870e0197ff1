"""The bandit's arithmetic: per-arm statistics and the UCB1, Thompson and fixed-weight choice rules.

Rewards are the child's improvement over its parent (positive: better). The rules:
- ucb1: mean normalised reward + c·sqrt(2 ln N / n). A reward is normalised as max(r, 0) / (largest reward seen
  on any arm), so the scale of a task's scores does not matter; an arm's n counts proposals still in flight too,
  so concurrent choices spread instead of piling onto one arm.
- thompson: Beta(1 + improved, 1 + not improved) per arm, where "improved" means reward > 0; draws one sample per
  arm and takes the largest. Scale-free, and robust to a few huge improvements.
- fixed: picks arms at random in proportion to their weight; learns nothing (a baseline).
cost_aware divides each arm's value (UCB1's mean, Thompson's sample) by its mean cost per call relative to the
mean over arms (floored at 5%), so a model twice as expensive must improve twice as often to be preferred.
Arms never tried are tried first (heaviest weight first). All of it is a function of the statistics, which are a
function of the observation history (the trials in the record, see ensemble.py), and of a seeded RNG: resumable and
reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

COST_FLOOR = 0.05


@dataclass
class ArmStats:
    """What the bandit knows of one arm."""

    chosen: int = 0  # proposals it was picked for
    pulls: int = 0  # rewards observed
    reward_sum: float = 0.0
    positive_sum: float = 0.0  # sum of max(reward, 0)
    improved: int = 0  # rewards > 0
    cost_sum: float = 0.0  # USD over observed proposals

    def observe(self, reward: float, cost_usd: float) -> None:
        self.pulls += 1
        self.reward_sum += reward
        self.positive_sum += max(reward, 0.0)
        self.improved += int(reward > 0)
        self.cost_sum += max(cost_usd, 0.0)

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.pulls if self.pulls else 0.0

    @property
    def mean_cost(self) -> float:
        return self.cost_sum / self.pulls if self.pulls else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_factors(stats: Mapping[str, ArmStats]) -> dict[str, float]:
    """Each arm's mean cost per call relative to the mean over arms with observations (1.0 when unknown)."""
    known = {key: s.mean_cost for key, s in stats.items() if s.pulls}
    average = sum(known.values()) / len(known) if known else 0.0
    if average <= 0:
        return {key: 1.0 for key in stats}
    return {key: max(known[key] / average, COST_FLOOR) if key in known else 1.0 for key in stats}


def ucb1_values(
    stats: Mapping[str, ArmStats], pending: Mapping[str, int], max_reward: float, exploration: float,
    factors: Mapping[str, float],
) -> dict[str, float]:
    counts = {key: s.pulls + pending.get(key, 0) for key, s in stats.items()}
    total = sum(counts.values())
    values: dict[str, float] = {}
    for key, s in stats.items():
        mean = s.positive_sum / (s.pulls * max_reward) if s.pulls and max_reward > 0 else 0.0
        bonus = exploration * math.sqrt(2.0 * math.log(max(total, 1)) / counts[key]) if counts[key] else math.inf
        values[key] = mean / factors[key] + bonus
    return values


def thompson_values(
    stats: Mapping[str, ArmStats], rng: random.Random, factors: Mapping[str, float]
) -> dict[str, float]:
    return {
        key: rng.betavariate(1 + s.improved, 1 + s.pulls - s.improved) / factors[key] for key, s in stats.items()
    }


def choose_key(
    policy: str, keys: Sequence[str], weights: Mapping[str, float], stats: Mapping[str, ArmStats],
    pending: Mapping[str, int], *, max_reward: float, exploration: float, cost_aware: bool, rng: random.Random,
) -> str:
    """The key of the arm to pull next among `keys` (non-empty)."""
    if policy == "fixed":
        return rng.choices(list(keys), weights=[weights[k] for k in keys])[0]
    untried = [k for k in keys if stats[k].pulls + pending.get(k, 0) == 0]
    if untried:
        return max(untried, key=lambda k: weights[k])  # max keeps the first of equal weights: config order
    subset = {k: stats[k] for k in keys}
    factors = cost_factors(subset) if cost_aware else {k: 1.0 for k in keys}
    if policy == "ucb1":
        values = ucb1_values(subset, pending, max_reward, exploration, factors)
    else:
        values = thompson_values(subset, rng, factors)
    return max(keys, key=lambda k: values[k])

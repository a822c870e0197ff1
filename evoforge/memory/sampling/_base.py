"""The parent sampler's interface: pick the trial a new candidate builds on, and the inspirations to show.

The loop calls `sample_parent` once per new trial with every trial of the run; a sampler looks only at the
scored ones (succeeded, finite score). Unscored trials still matter to samplers that count children.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from evoforge.models import Direction, Trial


def scored_trials(trials: Sequence[Trial]) -> list[Trial]:
    """The candidates: scored trials in id order; ValueError when there is none."""
    scored = sorted((trial for trial in trials if trial.scored), key=lambda trial: trial.id)
    if not scored:
        raise ValueError("no scored trial to sample from: a trial must first succeed with a finite score")
    return scored


def ranked(trials: Sequence[Trial], direction: Direction) -> list[Trial]:
    """Scored trials, best first (ties: lowest id)."""
    sign = direction.sign()
    return sorted((tr for tr in trials if tr.scored), key=lambda tr: (-sign * float(tr.score or 0.0), tr.id))


class Sampler(ABC):
    """Chooses parents and inspirations. `self.rng` is the only source of randomness, seeded once."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    @abstractmethod
    def sample_parent(
        self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None = None
    ) -> Trial:
        """Pick a parent among the scored trials of `trials` (all trials of the run, any status).

        `pending` maps a parent id to the number of its children chosen but not yet in the record.
        Raises ValueError when no trial is scored.
        """

    def sample_inspirations(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        """Up to `k` scored trials other than the parent, one per distinct program: the best ones, plus one
        drawn at random from the rest so the researcher also sees something off the beaten track."""
        if k <= 0:
            return []
        seen = {parent.code}
        pool: list[Trial] = []
        for trial in ranked(trials, direction):
            if trial.id != parent.id and trial.code not in seen:
                seen.add(trial.code)
                pool.append(trial)
        if len(pool) <= k:
            return pool
        n_top = max(1, k - 1)
        chosen = pool[:n_top]
        if len(chosen) < k:
            chosen.append(self.rng.choice(pool[n_top:]))
        return chosen

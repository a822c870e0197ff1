"""The parent sampler's interface: pick the trial a new candidate builds on, and the inspirations to show.

The loop calls `pick` once per new trial with every trial of the run (the population it keeps up to date from the
record; tests may call `sample_parent` with a plain list); a sampler looks only at the scored ones (succeeded,
finite score). Unscored trials still matter to samplers that count children.

What a pick decided (the sampler, its turn, the island, the cell, why) comes back as facts the loop writes on the
trial's row. A sampler's state is a function of those facts: `observe` folds in each trial the record writes, and
`rebuild` replays a run's trials on start and on resume; nothing else is saved. The randomness of a pick is drawn
from an RNG derived from the seed and the pick's turn (picks recorded + picks in flight), so a resumed run draws as
a run never stopped would.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import Direction, Trial


def as_pool(trials: Sequence[Trial], direction: Direction = Direction.MAXIMIZE) -> TrialPool:
    """`trials` itself when it is a pool ranked for `direction` (the loop's population), else a pool built from it
    (a plain list, as tests pass): every helper below reads the pool's indexes, one path for both."""
    if isinstance(trials, TrialPool) and trials.direction is direction:
        return trials
    return TrialPool(direction, trials)


pool_for = as_pool  # the name the samplers use


def scored_trials(trials: Sequence[Trial]) -> list[Trial]:
    """The candidates: scored trials in id order (the pool's own list: read it, do not change it); ValueError when
    there is none."""
    pool = trials if isinstance(trials, TrialPool) else as_pool(trials)
    scored = pool.scored_by_id()
    if not scored:
        raise ValueError("no scored trial to sample from: a trial must first succeed with a finite score")
    return scored


def require_scored(trials: Sequence[Trial]) -> None:
    """ValueError (the message of `scored_trials`) when no trial is scored."""
    pool = trials if isinstance(trials, TrialPool) else as_pool(trials)
    if not pool.n_scored:
        scored_trials([])


def count_children(trials: Sequence[Trial]) -> Counter[int]:
    """Children per parent id, any status (a child with its parent listed twice counts once)."""
    return (trials if isinstance(trials, TrialPool) else as_pool(trials)).children_counts()


def best_n(trials: Sequence[Trial], direction: Direction, n: int) -> list[Trial]:
    """The n best scored trials, best first (ties: lowest id), without sorting the whole run."""
    return as_pool(trials, direction).best(n)


def ranked(trials: Sequence[Trial], direction: Direction) -> list[Trial]:
    """Scored trials, best first (ties: lowest id)."""
    return as_pool(trials, direction).best()


@dataclass(frozen=True)
class Pick:
    """One pick: the parent, the inspirations, and the facts to keep on the trial built from them."""

    parent: Trial
    inspirations: list[Trial]
    facts: dict[str, Any]


class Sampler(ABC):
    """Chooses parents and inspirations. `self.rng` is the only source of randomness: seeded once for direct calls,
    derived from the seed and the turn for each `pick`."""

    name = "sampler"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(32)
        self.rng = random.Random(seed)
        self.picks = 0  # trials in the record made from one of this sampler's picks
        self.turn: int | None = None  # the turn of the pick under way (None: a direct call)
        self.why: dict[str, Any] = {}  # what `sample_parent` decided, for the pick's facts

    # ---- the facts: written with each trial, read back on start ---------------------------------------------
    def pick(self, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None, k: int) -> Pick:
        """Parent and `k` inspirations for the next trial, with the facts to record on it. `pending` maps a parent
        id to its children picked but not yet in the record: their number is the picks in flight."""
        turn = self.recorded_picks(trials, direction) + sum(max(0, n) for n in (pending or {}).values())
        self.rng, self.turn = random.Random(f"{self.seed}:{turn}"), turn
        try:
            parent = self.sample_parent(trials, direction, pending)
            inspirations = self.sample_inspirations(trials, parent, k, direction)
            return Pick(parent, inspirations, {"sampler": self.name, "turn": turn, **self.pick_facts(parent)})
        finally:
            self.turn = None

    def recorded_picks(self, trials: Sequence[Trial], direction: Direction) -> int:
        """How many trials in the record were made from this sampler's picks."""
        return self.picks

    def pick_facts(self, parent: Trial) -> dict[str, Any]:
        """What this sampler adds to a pick's facts (the island, the cell, why): what `sample_parent` noted."""
        return dict(self.why)

    def observe(self, trial: Trial, old: Trial | None) -> None:
        """Fold in a trial the record wrote (`old`: the same trial as it stood before, None when new)."""
        if old is None and "sampler" in trial.facts:
            self.picks += 1

    def rebuild(self, trials: Sequence[Trial], direction: Direction) -> None:
        """Forget everything and replay a run's trials (in id order): the state a live sampler has after them."""
        self.reset()
        for trial in sorted(trials, key=lambda tr: tr.id):
            self.observe(trial, None)

    def reset(self) -> None:
        self.picks = 0

    def state(self, trials: Sequence[Trial] | None = None, direction: Direction | None = None) -> dict[str, Any]:
        """What this sampler knows, as plain data (a resumed sampler equals the live one on it); samplers whose
        indexes are views of the run (MAP-Elites grids) add them when given its trials."""
        return {"picks": self.picks}

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
        if len(trials) > 64 * (k + 1):
            return self._sample_inspirations_large(trials, parent, k, direction)
        best_first = ranked(trials, direction)
        seen = {parent.code}
        pool: list[Trial] = []
        for trial in best_first:
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

    def _sample_inspirations_large(
        self, trials: Sequence[Trial], parent: Trial, k: int, direction: Direction
    ) -> list[Trial]:
        """The same rule on a large run without sorting all of it: the top distinct programs among the best few,
        then random draws from the rest of the ranking until one has a program not yet shown (bounded)."""
        pool = pool_for(trials, direction)
        best_first = pool.best(8 * k + 8)
        seen, chosen, n_top, i = {parent.code}, [], max(1, k - 1), 0
        while i < len(best_first) and len(chosen) < n_top:
            trial = best_first[i]
            if trial.id != parent.id and trial.code not in seen:
                seen.add(trial.code)
                chosen.append(trial)
            i += 1
        for _ in range(32):  # the rest: every scored trial ranked below those looked at
            if len(chosen) >= k or i >= pool.n_scored:
                break
            trial = pool.ranked_at(self.rng.randrange(i, pool.n_scored))
            if trial.id != parent.id and trial.code not in seen:
                seen.add(trial.code)
                chosen.append(trial)
        return chosen

"""The parent sampler's interface: pick the trial a new candidate builds on, and the inspirations to show.

The loop calls `sample_parent` once per new trial with every trial of the run (a `TrialPool` it keeps up to date;
tests may pass a plain list); a sampler looks only at the scored ones (succeeded, finite score). Unscored trials
still matter to samplers that count children.
"""

from __future__ import annotations

import heapq
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from evoforge.memory.sampling.pool import TrialPool, rank_key
from evoforge.models import Direction, Trial


class _Memo:
    """A small memo per helper, keyed by the very sequence passed in, its length and (for a pool) its version: the
    loop hands the same sequence to `sample_parent` and `sample_inspirations`, so each pass over the run is made
    once per trial. (A plain list changed in place without changing its length is not noticed: pass a new list.)"""

    SIZE = 4

    def __init__(self) -> None:
        self.entries: list[tuple[Sequence[Trial], tuple[Any, ...], Any]] = []

    def get(self, trials: Sequence[Trial], extra: Any, compute: Any) -> Any:
        key = (len(trials), getattr(trials, "version", None), extra)
        for source, known, value in self.entries:
            if source is trials and known == key:
                return value
        value = compute()
        self.entries = [(trials, key, value), *self.entries[: self.SIZE - 1]]
        return value


_SCORED, _POOLS, _CHILDREN = _Memo(), _Memo(), _Memo()


def pool_for(trials: Sequence[Trial], direction: Direction) -> TrialPool:
    """`trials` itself when it is a pool ranked for `direction` (what the loop passes), else a pool built from it."""
    if isinstance(trials, TrialPool) and trials.direction is direction:
        return trials
    return _POOLS.get(trials, direction, lambda: TrialPool(direction, trials))


def scored_trials(trials: Sequence[Trial]) -> list[Trial]:
    """The candidates: scored trials in id order; ValueError when there is none."""
    scored = list(_SCORED.get(trials, None, lambda: sorted((t for t in trials if t.scored), key=lambda t: t.id)))
    if not scored:
        raise ValueError("no scored trial to sample from: a trial must first succeed with a finite score")
    return scored


def require_scored(trials: Sequence[Trial]) -> None:
    """ValueError (the message of `scored_trials`) when no trial is scored; O(1) on a pool."""
    if isinstance(trials, TrialPool):
        if not trials.n_scored:
            scored_trials([])
        return
    scored_trials(trials)


def count_children(trials: Sequence[Trial]) -> Counter[int]:
    """Children per parent id, any status (a child with its parent listed twice counts once)."""
    if isinstance(trials, TrialPool):
        return trials.children_counts()
    return Counter(_CHILDREN.get(
        trials, None, lambda: Counter(parent_id for trial in trials for parent_id in set(trial.parent_ids))
    ))


def rng_state(rng: random.Random) -> list[Any]:
    """`rng`'s position as JSON-friendly lists (for `state_dict`)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: Sequence[Any]) -> None:
    """Restore a position saved by `rng_state`."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def best_n(trials: Sequence[Trial], direction: Direction, n: int) -> list[Trial]:
    """The n best scored trials, best first (ties: lowest id), without sorting the whole run."""
    if isinstance(trials, TrialPool) and trials.direction is direction:
        return trials.best(n)
    return heapq.nsmallest(n, (tr for tr in trials if tr.scored), key=lambda tr: rank_key(tr, direction))


def ranked(trials: Sequence[Trial], direction: Direction) -> list[Trial]:
    """Scored trials, best first (ties: lowest id)."""
    return pool_for(trials, direction).best()


class Sampler(ABC):
    """Chooses parents and inspirations. `self.rng` is the only source of randomness, seeded once."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this sampler's picks: its RNG position, plus what subclasses add.
        JSON-friendly; the loop stores it in the record after each sample."""
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a `state_dict()` of a sampler built with the same settings (missing keys: kept as is)."""
        if state.get("rng"):
            set_rng_state(self.rng, state["rng"])

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

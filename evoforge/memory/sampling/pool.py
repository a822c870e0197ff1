"""The run's trials as samplers see them, indexed as they arrive: scored trials kept ranked, children counted per
parent, and each parent's scored children's scores summed. The conductor keeps one pool up to date, so choosing a
parent reads these indexes instead of scanning the whole run (the cost of a trial must not grow with the record).

A pool is a `Sequence[Trial]` (in arrival order): samplers accept any sequence, and `_base.as_pool` builds a pool
from a plain list. The run's one pool is the loop's population (memory/population.py), fed by the record's writes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from evoforge.models import Direction, Trial


def rank_key(trial: Trial, direction: Direction) -> tuple[float, int]:
    """Sort key of scored trials, best first: the better score first, ties to the lowest id."""
    return (-direction.sign() * float(trial.score or 0.0), trial.id)


class TrialPool(Sequence[Trial]):
    """Every trial of a run (any status), with incremental indexes; `put` adds a trial or replaces it by id."""

    def __init__(self, direction: Direction, trials: Iterable[Trial] = ()) -> None:
        self.direction = direction
        self._by_id: dict[int, Trial] = {}
        self._order: list[int] = []
        self._ranked: list[tuple[float, int]] = []  # (-sign * score, id): best first, ties to the lowest id
        self._children: Counter[int] = Counter()  # any status; a parent listed twice counts once
        self._child_sum: dict[int, float] = {}  # raw scores of scored children, per parent
        self._child_n: Counter[int] = Counter()
        self._scored_ids: list[int] = []  # ids of scored trials, ascending (new trials come last: appended)
        self._scored_by_id: list[Trial] | None = None  # the same trials, built when asked, until the next `put`
        for trial in trials:  # in bulk: rank once at the end instead of inserting one by one
            self.put(trial, rank=False)
        self._ranked.sort()

    # ---- keeping it up to date -------------------------------------------------------------------------------
    def put(self, trial: Trial, *, rank: bool = True) -> None:
        old = self._by_id.get(trial.id)
        if trial.scored or (old is not None and old.scored):
            self._scored_by_id = None
        if old is None:
            self._order.append(trial.id)
            for parent_id in set(trial.parent_ids):
                self._children[parent_id] += 1
        elif old.scored:
            self._unscore(old)
        self._by_id[trial.id] = trial
        if trial.scored:
            if not self._scored_ids or trial.id > self._scored_ids[-1]:
                self._scored_ids.append(trial.id)
            else:
                bisect.insort(self._scored_ids, trial.id)
            if rank:
                bisect.insort(self._ranked, self._key(trial))
            else:
                self._ranked.append(self._key(trial))
            for parent_id in set(trial.parent_ids):
                self._child_sum[parent_id] = self._child_sum.get(parent_id, 0.0) + float(trial.score or 0.0)
                self._child_n[parent_id] += 1

    def _unscore(self, trial: Trial) -> None:
        key = self._key(trial)
        index = bisect.bisect_left(self._ranked, key)
        if index < len(self._ranked) and self._ranked[index] == key:
            del self._ranked[index]
        index = bisect.bisect_left(self._scored_ids, trial.id)
        if index < len(self._scored_ids) and self._scored_ids[index] == trial.id:
            del self._scored_ids[index]
        for parent_id in set(trial.parent_ids):
            self._child_sum[parent_id] -= float(trial.score or 0.0)
            self._child_n[parent_id] -= 1

    def _key(self, trial: Trial) -> tuple[float, int]:
        return rank_key(trial, self.direction)

    # ---- Sequence -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> Trial: ...

    @overload
    def __getitem__(self, index: slice) -> list[Trial]: ...

    def __getitem__(self, index: int | slice) -> Trial | list[Trial]:
        if isinstance(index, slice):
            return [self._by_id[i] for i in self._order[index]]
        return self._by_id[self._order[index]]

    def __iter__(self) -> Iterator[Trial]:
        return (self._by_id[i] for i in self._order)

    # ---- what samplers read ---------------------------------------------------------------------------------
    def scored_by_id(self) -> list[Trial]:
        """The scored trials in id order (kept until the next `put`: samplers ask it of every pick)."""
        if self._scored_by_id is None:
            self._scored_by_id = [self._by_id[i] for i in self._scored_ids]
        return self._scored_by_id

    def get(self, trial_id: int) -> Trial | None:
        return self._by_id.get(trial_id)

    @property
    def n_scored(self) -> int:
        return len(self._ranked)

    def best(self, n: int | None = None) -> list[Trial]:
        """The n best scored trials (all when n is None), best first; ties go to the lowest id."""
        keys = self._ranked if n is None else self._ranked[:n]
        return [self._by_id[trial_id] for _, trial_id in keys]

    def iter_best(self) -> Iterator[Trial]:
        """Scored trials, best first, lazily (stop early without building the whole ranking)."""
        return (self._by_id[trial_id] for _, trial_id in self._ranked)

    def ranked_at(self, position: int) -> Trial:
        """The scored trial at `position` in the ranking (0 is the best)."""
        return self._by_id[self._ranked[position][1]]

    def score_range(self) -> tuple[float, float]:
        """(lowest, highest) score among scored trials; ValueError when there is none."""
        if not self._ranked:
            raise ValueError("no scored trial")
        ends = (self.ranked_at(0).score, self.ranked_at(-1).score)
        return min(ends), max(ends)  # type: ignore[type-var]

    def children(self, trial_id: int) -> int:
        """How many trials (any status) list `trial_id` among their parents."""
        return self._children[trial_id]

    def children_counts(self) -> Counter[int]:
        """Children per parent id (a copy)."""
        return Counter(self._children)

    def child_scores(self, trial_id: int) -> tuple[float, int]:
        """(sum, count) of the scores of `trial_id`'s scored children."""
        return self._child_sum.get(trial_id, 0.0), self._child_n[trial_id]

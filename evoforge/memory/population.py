"""The one in-memory population of a run: every trial as the record last wrote it, ranked and counted for the
samplers (a `TrialPool`), plus what the loop reads (best so far, recent and failed trials, the novelty window).

It is updated only from the record's writes (`Record.subscribe(population.put)`), so it never holds a trial the
record does not; everything in it can be rebuilt by reading the record again.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable

from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import EVALUATED, Direction, Trial, TrialStatus

RECENT_WINDOW = 20
NOVELTY_WINDOW = 200  # the newest evaluated trials a proposal is compared with (besides its parent's family)

STATUSES = tuple(status.value for status in TrialStatus)
Follower = Callable[[Trial, Trial | None], None]  # (trial as written, as it stood before or None)


class Population(TrialPool):
    """The run's trials; `put` (what the record calls) adds or replaces one by id and tells the followers."""

    def __init__(self, direction: Direction, trials: Iterable[Trial] = ()) -> None:
        self.best_trial: Trial | None = None  # the best scored trial so far (ties: the lowest id)
        self.recent: deque[Trial] = deque(maxlen=RECENT_WINDOW)
        self.failures: deque[Trial] = deque(maxlen=RECENT_WINDOW)
        self.status_counts: Counter[str] = Counter()
        self.failure_classes: Counter[str] = Counter()  # failed trials per error class ("unknown" without one)
        self.evaluated: deque[Trial] = deque(maxlen=NOVELTY_WINDOW)
        self._evaluated_ids: deque[int] = deque(maxlen=NOVELTY_WINDOW)  # theirs, in the same order
        self.children_ids: dict[int, list[int]] = {}
        self._followers: list[Follower] = []
        super().__init__(direction, trials)

    def follow(self, follower: Follower) -> None:
        """Call `follower(trial, old)` after every later `put`."""
        self._followers.append(follower)

    def put(self, trial: Trial, *, rank: bool = True) -> None:
        old = self.get(trial.id)
        super().put(trial, rank=rank)
        self._index(trial, old)
        for follower in self._followers:
            follower(trial, old)

    def _index(self, trial: Trial, old: Trial | None) -> None:
        if old is not None:
            self.status_counts[old.status.value] -= 1
            if old.status is TrialStatus.FAILED:
                self.failure_classes[old.error_class or "unknown"] -= 1
        self.status_counts[trial.status.value] += 1
        if trial.status is TrialStatus.FAILED:
            self.failure_classes[trial.error_class or "unknown"] += 1
        if old is None:
            for parent_id in trial.parent_ids[:1]:
                self.children_ids.setdefault(parent_id, []).append(trial.id)
        if trial.status.finished and (old is None or not old.status.finished):
            self.recent.appendleft(trial)
            if trial.status is TrialStatus.FAILED:
                self.failures.appendleft(trial)
            if trial.code and trial.status is not TrialStatus.REJECTED and trial.reused_from is None:
                self.evaluated.appendleft(trial)
                self._evaluated_ids.appendleft(trial.id)
        if trial.scored and self._beats_best(trial):
            self.best_trial = trial

    def _beats_best(self, trial: Trial) -> bool:
        best = self.best_trial
        if best is None or best.id == trial.id:
            return True
        assert trial.score is not None and best.score is not None
        return self.direction.better(trial.score, best.score) or (trial.score == best.score and trial.id < best.id)

    def reward(self, trial: Trial) -> float:
        """The bandit's reward for a finished trial: 1 when it scored better than its (scored) parent, else 0."""
        parent = self.get(trial.parent_ids[0]) if trial.parent_ids else None
        if parent is None or parent.score is None or not trial.scored:
            return 0.0
        return 1.0 if self.direction.better(float(trial.score or 0.0), parent.score) else 0.0

    def novelty_pool(self, parent: Trial) -> list[Trial]:
        """What a proposal built on `parent` is checked against: the parent, its newest evaluated children, and the
        newest evaluated trials (both bounded, so the check costs the same at 100 or 100,000 trials, and for a
        parent with thousands of children)."""
        children = self.children_ids.get(parent.id, [])[-NOVELTY_WINDOW:]
        family = [parent, *map(self._by_id.__getitem__, children)]
        pool = {t.id: t for t in family if t.status in EVALUATED and t.code}
        pool.update(zip(self._evaluated_ids, self.evaluated, strict=True))  # no Python loop over the window
        return list(pool.values())

    def counts(self) -> dict[str, int]:
        return {status: self.status_counts[status] for status in STATUSES}

    def mean_eval_seconds(self) -> float:
        spent = [t.seconds for t in self.recent if t.seconds > 0]
        return sum(spent) / len(spent) if spent else 0.0

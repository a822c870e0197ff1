"""What the conductor keeps in memory while a run goes: the trials seen, the work in flight, the best so far,
the recent and failed trials the researcher is shown.

Everything here is updated incrementally, so the cost of one trial does not grow with the size of the record.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evoforge.memory.sampling.pool import TrialPool
from evoforge.models import Direction, Trial, TrialStatus

RECENT_WINDOW = 20
NOVELTY_WINDOW = 200  # the newest evaluated trials a proposal is compared with (besides its parent's family)


@dataclass
class LoopState:
    """The conductor's view of the run (the record stays the truth; this is its in-memory index)."""

    direction: Direction
    trials: dict[int, Trial] = field(default_factory=dict)
    started: int = 0
    in_flight: int = 0
    pending_parents: Counter[int] = field(default_factory=Counter)
    stop_reason: str | None = None
    internal_errors: list[str] = field(default_factory=list)  # unexpected exceptions in a row, one line each
    halted: str | None = None  # the run cannot go on (its LLM endpoint is down, repeated internal errors): why
    best: Trial | None = None
    recent: deque[Trial] = field(default_factory=lambda: deque(maxlen=RECENT_WINDOW))
    failures: deque[Trial] = field(default_factory=lambda: deque(maxlen=RECENT_WINDOW))
    status_counts: Counter[str] = field(default_factory=Counter)
    evaluated: deque[Trial] = field(default_factory=lambda: deque(maxlen=NOVELTY_WINDOW))
    children: dict[int, list[int]] = field(default_factory=dict)
    pool: TrialPool = field(init=False)  # what samplers read: the same trials, ranked and counted as they arrive

    def __post_init__(self) -> None:
        self.pool = TrialPool(self.direction)

    def load(self, trials: Iterable[Trial]) -> None:
        """Index a run's trials at start-up (in bulk: the pool ranks them once)."""
        trials = list(trials)
        for trial in trials:
            self._index(trial)
        self.pool = TrialPool(self.direction, trials)

    def put(self, trial: Trial) -> None:
        """Add or update a trial (as the record now holds it)."""
        self.pool.put(trial)
        self._index(trial)

    def _index(self, trial: Trial) -> None:
        old = self.trials.get(trial.id)
        if old is not None:
            self.status_counts[old.status.value] -= 1
        self.trials[trial.id] = trial
        self.status_counts[trial.status.value] += 1
        if old is None:
            for parent_id in trial.parent_ids[:1]:
                self.children.setdefault(parent_id, []).append(trial.id)
        if trial.status.finished and (old is None or not old.status.finished):
            self.recent.appendleft(trial)
            if trial.status is TrialStatus.FAILED:
                self.failures.appendleft(trial)
            if trial.code and trial.status is not TrialStatus.REJECTED and trial.reused_from is None:
                self.evaluated.appendleft(trial)
        if trial.scored and self._beats_best(trial):
            self.best = trial

    def _beats_best(self, trial: Trial) -> bool:
        best = self.best
        if best is None or best.id == trial.id:
            return True
        assert trial.score is not None and best.score is not None
        return self.direction.better(trial.score, best.score) or (trial.score == best.score and trial.id < best.id)

    def novelty_pool(self, parent: Trial) -> list[Trial]:
        """What a proposal built on `parent` is checked against: the parent, its newest evaluated children, and the
        newest evaluated trials (both bounded, so the check costs the same at 100 or 100,000 trials, and for a
        parent with thousands of children)."""
        children = self.children.get(parent.id, [])[-NOVELTY_WINDOW:]
        family = [parent, *(self.trials[i] for i in children)]
        pool = {t.id: t for t in family if t.status.finished and t.code and t.status is not TrialStatus.REJECTED}
        pool.update((t.id, t) for t in self.evaluated)
        return list(pool.values())

    def counts(self) -> dict[str, int]:
        return {status.value: self.status_counts[status.value] for status in TrialStatus}

    def mean_eval_seconds(self) -> float:
        spent = [t.seconds for t in self.recent if t.seconds > 0]
        return sum(spent) / len(spent) if spent else 0.0

    def why_no_score(self, run_dir: Path) -> str:
        """One line for a run with no scored trial to build on: the seed's error (its first line) and class."""
        seed = min(self.trials.values(), key=lambda t: t.id, default=None)
        if seed is None or seed.status is not TrialStatus.FAILED and seed.status is not TrialStatus.PRUNED:
            return f"no trial has a valid score yet: see `evoforge status {run_dir}`"
        lines = [line.strip() for line in (seed.error_message or "").splitlines()]
        first = next((line for line in lines if line.strip("^~ ")), "no message")
        repairs = len(self.trials) - 1
        tried = f" ({repairs} repair attempt{'s' if repairs != 1 else ''} by the researcher failed too)" * (repairs > 0)
        return (f"the seed program failed: {first} ({seed.error_class or seed.status.value}){tried}; no trial can "
                f"build on it: fix the task's program or evaluator and start a new run (details: `evoforge show "
                f"{run_dir} {seed.id}`)")

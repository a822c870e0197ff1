"""What the conductor keeps in memory while a run goes besides the run's population (memory/population.py): the work
in flight, and why it stops.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evoforge.memory.population import Population
from evoforge.models import Direction, Trial, TrialStatus


@dataclass
class LoopState:
    """The conductor's bookkeeping; the trials themselves are the population's (the record's, in memory)."""

    population: Population
    started: int = 0
    in_flight: int = 0
    pending_parents: Counter[int] = field(default_factory=Counter)  # children picked, not yet in the record
    stop_reason: str | None = None
    internal_errors: list[str] = field(default_factory=list)  # unexpected exceptions in a row, one line each
    halted: str | None = None  # the run cannot go on (its LLM endpoint is down, repeated internal errors): why

    @property
    def direction(self) -> Direction:
        return self.population.direction

    @property
    def best(self) -> Trial | None:
        return self.population.best_trial

    def why_no_score(self, run_dir: Path) -> str:
        """One line for a run with no scored trial to build on: the seed's error (its first line) and class."""
        seed = self.population[0] if len(self.population) else None
        if seed is None or seed.status is not TrialStatus.FAILED and seed.status is not TrialStatus.PRUNED:
            return f"no trial has a valid score yet: see `evoforge status {run_dir}`"
        lines = [line.strip() for line in (seed.error_message or "").splitlines()]
        first = next((line for line in lines if line.strip("^~ ")), "no message")
        repairs = len(self.population) - 1
        tried = f" ({repairs} repair attempt{'s' if repairs != 1 else ''} by the researcher failed too)" * (repairs > 0)
        return (f"the seed program failed: {first} ({seed.error_class or seed.status.value}){tried}; no trial can "
                f"build on it: fix the task's program or evaluator and start a new run (details: `evoforge show "
                f"{run_dir} {seed.id}`)")

"""Repeated evaluations of one program, each with its own seed (EVOFORGE_SEED = 0, 1, …): the spread of its score
is the evaluation's noise. `evoforge eval` (reproduce a champion) and `evoforge noise` (how much of a difference is
real, measured before a run starts) are built on it."""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evoforge.experiment.engineer import Engineer
from evoforge.models import Direction, Outcome, TrialStatus
from evoforge.task.loader import Task


@dataclass(frozen=True)
class Spread:
    """Scores of k repeats: their mean, sample standard deviation and standard error of the mean (sd / √k)."""

    scores: tuple[float, ...]
    failed: int

    @property
    def k(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.scores) if len(self.scores) >= 2 else None

    @property
    def stderr(self) -> float | None:
        sd = self.sd
        return None if sd is None else sd / math.sqrt(self.k)

    def smallest_real_difference(self) -> float | None:
        """The difference between two programs' k-repeat means that is real at about 95% (two standard errors of a
        difference of two such means: 2·√2·sd/√k); smaller differences are within the noise."""
        sd = self.sd
        return None if sd is None else 2.0 * math.sqrt(2.0) * sd / math.sqrt(self.k)


def spread_of(outcomes: Sequence[Outcome]) -> Spread:
    scores = tuple(float(o.score) for o in outcomes if o.status is TrialStatus.SUCCEEDED and o.score is not None)
    return Spread(scores=scores, failed=len(outcomes) - len(scores))


async def evaluate_repeats(task: Task, code: str, repeats: int, folder: Path | None = None) -> list[Outcome]:
    """Evaluate `code` `repeats` times, one after another, with seeds 0 … repeats−1, each in a fresh folder under
    `folder` (a temporary one, removed afterwards, when None). All stages run; no gate has a history to compare with."""
    engineer = Engineer(task)
    with tempfile.TemporaryDirectory(prefix="evoforge-eval-") as scratch:
        root = Path(folder) if folder is not None else Path(scratch)
        outcomes = []
        for seed in range(repeats):
            outcomes.append(await engineer.evaluate(code, root / f"repeat-{seed}", seed=seed))
        return outcomes


def run_repeats(task: Task, code: str, repeats: int, folder: Path | None = None) -> list[Outcome]:
    return asyncio.run(evaluate_repeats(task, code, repeats, folder))


def typical_improvement(run_dir: Path, direction: Direction) -> float | None:
    """The median gain of the improving steps on a past run's champion lineage (None without any): what a real
    difference looked like on this task before."""
    from evoforge.memory.record import Record
    from evoforge.report.collect import lineage

    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        trials = record.trials()
        champion = record.best(direction)
    finally:
        record.close()
    gains = [abs(s.effect) for s in lineage({t.id: t for t in trials}, champion)
             if s.effect is not None and s.effect != 0 and direction.better(s.effect, 0.0)]
    return statistics.median(gains) if gains else None

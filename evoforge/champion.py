"""Who holds the title of best trial. A trial whose score beats the champion's mean is a challenger: it is evaluated
again with other seeds (`champion.repeats` evaluations in all, default 3 for a seeded evaluator; at least 2 for a
trial a monitor flagged suspect) and takes the title only when it beats the champion by more than the noise.

The rule is "mean minus standard error": the challenger's mean, moved one standard error toward worse, must be
strictly better than the champion's mean moved one standard error toward better — the two mean ± stderr intervals
do not overlap. It needs no distribution table, errs toward keeping the champion (a lucky seed does not win), and
with one evaluation each (a deterministic evaluator) it is the plain "strictly better". Every extra evaluation and
every decision, crowned or not, is kept in the record (memory/champion_log.py)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from evoforge.experiment import Engineer
from evoforge.memory.champion_log import ChampionDecision
from evoforge.memory.record import Record
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.task import Task


def mean_and_stderr(scores: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd / √k; 0 for a single score)."""
    mean = statistics.fmean(scores)
    return mean, (statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) >= 2 else 0.0)


def beats(direction: Direction, mean: float, stderr: float, holder: ChampionDecision) -> bool:
    """The mean-minus-stderr rule (see the module's docstring)."""
    sign = direction.sign()
    theirs = holder.mean if holder.mean is not None else -sign * math.inf
    return direction.better(mean - sign * stderr, theirs + sign * (holder.stderr or 0.0))


class Crowning:
    """Considers each scored trial of a run for the title; `holder` is the champion (None before the first)."""

    def __init__(self, task: Task, record: Record, engineer: Engineer, run_dir: Path) -> None:
        self.task, self.record, self.engineer, self.run_dir = task, record, engineer, run_dir
        self.direction = task.config.objective.direction
        self.repeats = task.config.champion_repeats
        self.holder = record.champion()

    def challenges(self, trial: Trial) -> bool:
        """Whether this trial's own score beats the champion's mean (only such a trial is evaluated again)."""
        if trial.status is not TrialStatus.SUCCEEDED or trial.score is None or trial.reused_from is not None:
            return False
        return self.holder is None or self.holder.mean is None or self.direction.better(trial.score, self.holder.mean)

    def evaluations_for(self, trial: Trial) -> int:
        """How many evaluations a challenger needs in all (its own first one included)."""
        return max(self.repeats, 2) if trial.suspect else self.repeats

    async def consider(self, trial: Trial) -> ChampionDecision | None:
        """Evaluate a challenger again and decide; None when the trial does not challenge. The record's writes go
        through its own thread (`Record.io`)."""
        if not self.challenges(trial):
            return None
        assert trial.score is not None
        wanted = self.evaluations_for(trial)
        scores, failure = [float(trial.score)], None
        for seed in range(1, wanted):
            outcome = await self.engineer.evaluate(trial.code, self.run_dir / "trials" / str(trial.id) /
                                                   f"champion-{seed}", seed=seed)
            failed = outcome.status is not TrialStatus.SUCCEEDED or outcome.score is None
            error = f"{outcome.error_class}: {outcome.error_message}" if failed else None
            await self.record.io(self.record.add_champion_evaluation, trial.id, seed, outcome.status.value,
                                 outcome.score, outcome.seconds, error)
            if failed:
                failure = f"its evaluation with seed {seed} did not score ({outcome.error_class or outcome.status})"
                break
            scores.append(float(outcome.score))
        mean, stderr = mean_and_stderr(scores)
        decision = self._decide(trial, mean, stderr, len(scores), failure)
        await self.record.io(self.record.add_champion_decision, decision)
        if decision.crowned:
            self.holder = decision
        return decision

    def _decide(self, trial: Trial, mean: float, stderr: float, k: int, failure: str | None) -> ChampionDecision:
        holder = self.holder
        summary = f"{mean:.6g} ± {stderr:.3g} over {k} evaluation{'s' if k != 1 else ''}"
        if failure is not None:
            return ChampionDecision(trial.id, mean, stderr, k, False, f"not crowned: {failure}")
        if holder is None:
            return ChampionDecision(trial.id, mean, stderr, k, True, f"first champion: {summary}")
        if beats(self.direction, mean, stderr, holder):
            return ChampionDecision(trial.id, mean, stderr, k, True,
                                    f"crowned: {summary} beats #{holder.trial_id}'s {holder.mean:.6g} ± "
                                    f"{holder.stderr or 0.0:.3g} by more than the noise")
        return ChampionDecision(trial.id, mean, stderr, k, False,
                                f"not crowned: {summary} is within the noise of #{holder.trial_id}'s "
                                f"{holder.mean:.6g} ± {holder.stderr or 0.0:.3g}")

"""The conductor: runs learn → design → experiment → analyze trials concurrently until the stopping rule holds.

Each trial: sample a parent and inspirations from the record (LEARN), ask the researcher for a candidate (DESIGN),
evaluate it in the sandbox (EXPERIMENT), digest the outcome (ANALYZE), and commit each step to the record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.analysis import digest_outcome
from evoforge.errors import RunError
from evoforge.experiment import Engineer
from evoforge.memory.record import Record
from evoforge.memory.sampling import Sampler
from evoforge.models import Outcome, Proposal, Trial, TrialStatus
from evoforge.research import Proposer, ResearchContext
from evoforge.research.edits import unified_diff
from evoforge.settings import RunSettings
from evoforge.task import Task

RECENT_WINDOW = 20


class Observer:
    """Receives progress; the CLI draws a progress bar from it, tests may count. Methods do nothing by default."""

    def run_started(self, *, run_dir: Path, proposer: str, settings: RunSettings, done: int) -> None:
        return None

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        return None

    def run_finished(self) -> None:
        return None


@dataclass
class LoopState:
    """What the conductor keeps in memory: the trials it has seen and the work in flight."""

    trials: dict[int, Trial] = field(default_factory=dict)
    started: int = 0
    pending_parents: Counter[int] = field(default_factory=Counter)
    stop_reason: str | None = None

    def best(self, task: Task) -> Trial | None:
        direction = task.config.objective.direction
        best: Trial | None = None
        for trial in self.trials.values():
            if trial.scored and (best is None or direction.better(trial.score, best.score)):  # type: ignore[arg-type]
                best = trial
        return best

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in TrialStatus}
        for trial in self.trials.values():
            counts[trial.status.value] += 1
        return counts


class Conductor:
    """Runs one run's trials: the seed first, then up to `concurrency` trials in flight."""

    def __init__(
        self,
        *,
        task: Task,
        record: Record,
        run_dir: Path,
        settings: RunSettings,
        proposer: Proposer,
        engineer: Engineer,
        sampler: Sampler,
        observer: Observer | None = None,
    ) -> None:
        self.task, self.record, self.run_dir, self.settings = task, record, run_dir, settings
        self.proposer, self.engineer, self.sampler, self.observer = proposer, engineer, sampler, observer
        self.state = LoopState(trials={t.id: t for t in record.trials()})
        self.state.started = len(self.state.trials)

    # ---- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> str:
        """Run until the stopping rule holds; returns why it stopped."""
        requeued = self.record.requeue_in_flight()
        if not self.state.trials:
            await self._evaluate_seed()
        if requeued:
            await self._gather(self._evaluate_recorded(trial_id) for trial_id in requeued)
        if self.state.best(self.task) is None:
            raise RunError("no trial has a valid score yet (did the seed program fail? see `evoforge show RUN_DIR 1`)")
        await self._gather(self._worker() for _ in range(self.settings.concurrency))
        return self.state.stop_reason or f"reached {self.settings.trials} trials"

    async def _worker(self) -> None:
        while self._claim_slot():
            await self._one_trial()

    async def _one_trial(self) -> None:
        trials = list(self.state.trials.values())
        cfg = self.task.config
        parent = self.sampler.sample_parent(trials, cfg.objective.direction, self.state.pending_parents)  # LEARN
        inspirations = self.sampler.sample_inspirations(
            trials, parent, cfg.research.num_inspirations, cfg.objective.direction
        )
        self.state.pending_parents[parent.id] += 1
        try:
            proposal = await self.proposer.propose(self._context(parent, inspirations))  # DESIGN
            trial_id = self._record_proposal(proposal, parent, inspirations)
        finally:
            self.state.pending_parents[parent.id] -= 1
        if proposal.error is None:
            await self._evaluate_recorded(trial_id)  # EXPERIMENT + ANALYZE

    # ---- steps ----------------------------------------------------------------------------------------------
    def _claim_slot(self) -> bool:
        if self.state.stop_reason is not None:
            return False
        if self.state.started >= self.settings.trials:
            return False
        self.state.started += 1
        return True

    def _context(self, parent: Trial, inspirations: list[Trial]) -> ResearchContext:
        cfg = self.task.config
        finished = sorted(
            (t for t in self.state.trials.values() if t.status.finished), key=lambda t: t.id, reverse=True
        )
        failures = [t for t in finished if t.status is TrialStatus.FAILED][: cfg.research.num_failures]
        return ResearchContext(
            problem=self.task.problem_text,
            program_name=self.task.program_name,
            metric=cfg.objective.metric,
            direction=cfg.objective.direction,
            parent=parent,
            inspirations=tuple(inspirations),
            failures=tuple(failures),
            recent=tuple(finished[:RECENT_WINDOW]),
            parent_digest=parent.digest,
        )

    def _record_proposal(self, proposal: Proposal, parent: Trial, inspirations: list[Trial]) -> int:
        trial_id = self.record.add_trial(
            parent_ids=[parent.id],
            inspiration_ids=[t.id for t in inspirations],
            name=proposal.name,
            motivation=proposal.motivation,
            code=proposal.code,
            diff=unified_diff(parent.code, proposal.code, self.task.program_name) if proposal.code else "",
            proposer=proposal.proposer,
            model=proposal.model,
        )
        self.record.add_llm_calls(trial_id, proposal.llm_calls)
        if proposal.error is not None:
            self.record.fail_trial(trial_id, "proposal_error", proposal.error)
            self._finished(trial_id)
        else:
            self.state.trials[trial_id] = self.record.trial(trial_id)
        return trial_id

    async def _evaluate_seed(self) -> None:
        self.state.started += 1
        trial_id = self.record.add_trial(
            parent_ids=[], inspiration_ids=[], name="seed", motivation="the task's seed program",
            code=self.task.seed_program, diff="", proposer="seed", model=None,
        )
        await self._evaluate_recorded(trial_id)

    async def _evaluate_recorded(self, trial_id: int) -> None:
        """Evaluate a trial already in the record (status proposed), digest it and commit the outcome."""
        trial = self.record.trial(trial_id)
        self.state.trials[trial_id] = trial
        self.record.mark_running(trial_id)
        outcome = await self.engineer.evaluate(trial.code, self.run_dir / "trials" / str(trial_id))
        self._analyze_and_commit(trial, outcome)

    def _analyze_and_commit(self, trial: Trial, outcome: Outcome) -> None:
        cfg = self.task.config
        parent = self.state.trials.get(trial.parent_ids[0]) if trial.parent_ids else None
        digest = digest_outcome(
            outcome, parent=parent, best=self.state.best(self.task),
            direction=cfg.objective.direction, metric=cfg.objective.metric,
        )
        self.record.finish_trial(trial.id, outcome, digest)
        self._finished(trial.id)

    def _finished(self, trial_id: int) -> None:
        trial = self.record.trial(trial_id)
        self.state.trials[trial_id] = trial
        best = self.state.best(self.task)
        target = self.settings.target_score
        if target is not None and best is not None and best.score is not None:
            direction = self.task.config.objective.direction
            if best.score == target or direction.better(best.score, target):
                self.state.stop_reason = f"reached target score {target:g} (trial #{best.id})"
        if self.observer is not None:
            self.observer.trial_finished(trial, best, self.state.counts())

    @staticmethod
    async def _gather(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

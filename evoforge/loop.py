"""The conductor: runs learn → design → experiment → analyze trials concurrently until the stopping rule holds.

Each trial: pick a parent and inspirations and retrieve knowledge (LEARN), ask the researcher for a candidate
screened by the novelty gate (DESIGN), evaluate it in the sandbox with its gates (EXPERIMENT), digest and analyse
the outcome and write lessons back (ANALYZE). The record owns the trials: each step is committed (on the record's
own thread, off the event loop) before the next, and the population, the sampler and the bandit learn only from
what the record wrote. Errors, an unreachable endpoint and seed repair: recovery.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from evoforge.analysis import digest_outcome
from evoforge.budget import Budgets, BudgetTracker, Spend
from evoforge.champion import Crowning
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.experiment import Engineer
from evoforge.experiment.gates.static import program_fingerprint
from evoforge.learning import Learning
from evoforge.memory.claims import ClaimLost, TrialBudgetFull
from evoforge.memory.cognition import Hit
from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.memory.sampling import Sampler
from evoforge.models import Digest, EvaluationHistory, Outcome, Proposal, ProposalStatus, Trial, TrialStatus
from evoforge.observer import Observer
from evoforge.programs import unified_diff
from evoforge.recovery import INTERNAL_ERRORS_TO_STOP, TRACEBACK_CHARS, Recovery, TrialPass
from evoforge.research import Proposer, ResearchContext
from evoforge.shared_run import SharedRun
from evoforge.state import LoopState
from evoforge.task import Task

__all__ = ["INTERNAL_ERRORS_TO_STOP", "TRACEBACK_CHARS", "Conductor", "Observer"]

log = logging.getLogger(__name__)


class Conductor(Recovery):
    """Runs one run's trials: the seed first, then `concurrency` evaluations in flight (and as many proposals)."""

    def __init__(self, *, task: Task, record: Record, run_dir: Path, settings: RunSettings, proposer: Proposer,
                 engineer: Engineer, sampler: Sampler, learning: Learning, observer: Observer | None = None) -> None:
        self.task, self.record, self.run_dir, self.settings = task, record, run_dir, settings
        self.proposer, self.engineer, self.sampler, self.learning = proposer, engineer, sampler, learning
        self.observer = observer
        # The record owns the trials; the population mirrors its writes, and the sampler and the bandit are
        # rebuilt from the facts on its trials (nothing else is kept between sessions).
        self.population = Population(task.config.objective.direction, record.trials())
        record.subscribe(self.population.put)
        sampler.rebuild(self.population, self.population.direction)
        proposer.rebuild((trial, self.population.reward(trial)) for trial in self.population)
        self.population.follow(self._learn_from)
        self.state = LoopState(self.population, started=len(self.population))
        self.budget = self._budget_tracker()
        self.eval_slots = asyncio.Semaphore(settings.concurrency)
        self.crowning = Crowning(task, record, engineer, run_dir)
        self._fingerprints: dict[int, str] = {}  # of the trials recorded and not yet evaluated in this session
        self._evaluated: set[str] = set()  # the fingerprints of the programs evaluated in this session
        self._analyses: dict[int, asyncio.Task[None]] = {}  # trials committed, being analysed (their workers went on)
        self.shared = SharedRun(record, self.population, on_finished=lambda _trial: self._check_target())

    # ---- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> str:
        """Run until the stopping rule holds; returns why it stopped. RunError when the run cannot go on: the seed
        has no score, the LLM endpoint is unreachable, or internal errors came several times in a row."""
        try:
            return await self._run()
        except BaseException:  # cancelled, or the run cannot go on: the analyses in flight are not waited for
            for task in self._analyses.values():
                task.cancel()
            raise
        finally:
            await asyncio.gather(*self._analyses.values(), return_exceptions=True)

    async def _run(self) -> str:
        requeued = await self.record.io(self.record.requeue_in_flight)
        self.shared.start(requeued)  # stopped by runs._run_and_close
        if not len(self.population):
            await self._guarded(self._evaluate_seed, TrialPass())
            if self.state.best is None:
                await self._repair_seed()
        if requeued:
            await self._gather(self._guarded(self._evaluate_pass, TrialPass(trial_id)) for trial_id in requeued)
        await self.shared.settle(self._evaluate_recorded, lambda: self.state.best is not None)  # a joiner: the seed
        if self.state.best is None:
            raise RunError(self.state.why_no_score(self.run_dir))
        self._check_target()  # a run resumed with a target its best trial has reached already starts nothing
        # More workers than evaluation slots: while K trials evaluate, `prefetch` more are being proposed, so a
        # freed slot finds its next candidate ready and LLM latency hides behind evaluation time.
        prefetch = self.settings.prefetch if self.settings.prefetch is not None else 2 * self.settings.concurrency
        await self._gather(self._worker() for _ in range(self.settings.concurrency + prefetch))
        if self.state.halted is None:  # trials other runners left (killed) or still hold: none stays unfinished
            await self.shared.settle(self._evaluate_recorded)
        while self._analyses:  # every trial's analysis is written before the run ends
            await asyncio.gather(*self._analyses.values())
        if self.state.halted is not None:
            raise RunError(self.state.halted)
        return self.state.stop_reason or f"reached {self.settings.trials} trials"

    async def _worker(self) -> None:
        while (adopted := await self.shared.adopt()) is not None:  # a trial another runner left: evaluate it first
            await self._guarded(self._evaluate_pass, TrialPass(adopted))
        while self._claim_slot():
            try:
                await self._guarded(self._one_trial, TrialPass())
            finally:
                self.state.in_flight -= 1

    async def _one_trial(self, trial_pass: TrialPass) -> None:
        research = self.task.config.research
        if self.shared.others_seen:  # other runners work on this run: pick from their latest trials too
            await self.shared.poll()
        pick = self.sampler.pick(self.population, self.population.direction, self.state.pending_parents,
                                 research.num_inspirations)  # LEARN
        parent = trial_pass.parent = pick.parent
        self.state.pending_parents[parent.id] += 1  # at once: the next pick's turn counts this one
        try:
            if (analysing := self._analyses.get(parent.id)) is not None:  # its analysis is part of what is shown
                await asyncio.wait([analysing])
            analysis = await self.learning.parent_analysis(parent)
            hits = await self.learning.retrieve(parent, list(self.population.failures)[: research.num_failures],
                                                analysis)
            ctx = await self._context(parent, pick.inspirations, hits, analysis)
            proposal = await self.learning.novelty.screen(self.proposer, ctx, self.population.novelty_pool(parent))
            if proposal.status is ProposalStatus.UNREACHABLE:  # DESIGN
                await self._unreachable(proposal)
                return
            try:
                trial = await self._record_proposal(proposal, parent, pick.inspirations, hits, pick.facts)
            except TrialBudgetFull:  # the run's runners together hold its trials already
                self.state.stop_reason = self.state.stop_reason or f"reached {self.settings.trials} trials"
                return
            trial_pass.trial_id = trial.id
        finally:
            self.state.pending_parents[parent.id] -= 1
            if self.state.pending_parents[parent.id] <= 0:  # every pick sums the counts: keep only those in flight
                del self.state.pending_parents[parent.id]
        if trial.status is TrialStatus.PROPOSED:
            await self._evaluate_recorded(trial.id)  # EXPERIMENT + ANALYZE

    async def _evaluate_pass(self, trial_pass: TrialPass) -> None:
        assert trial_pass.trial_id is not None
        await self._evaluate_recorded(trial_pass.trial_id)

    # ---- LEARN ----------------------------------------------------------------------------------------------
    def _learn_from(self, trial: Trial, old: Trial | None) -> None:
        """Each trial the record writes teaches the sampler and the bandit (the facts its pick left on it)."""
        self.sampler.observe(trial, old)
        self.proposer.observe(trial, old, self.population.reward(trial) if trial.status.finished else 0.0)

    async def _context(self, parent: Trial, inspirations: list[Trial], hits: list[Hit],
                       analysis: str | None = None) -> ResearchContext:
        """What the researcher is shown; `analysis`: the parent's, when the caller has it already."""
        cfg = self.task.config
        if analysis is None:
            analysis = await self.learning.parent_analysis(parent)
        return ResearchContext(
            problem=self.task.problem_text, program_name=self.task.program_name, metric=cfg.objective.metric,
            direction=cfg.objective.direction, parent=parent, inspirations=tuple(inspirations),
            failures=tuple(list(self.population.failures)[: cfg.research.num_failures]),
            recent=tuple(self.population.recent), parent_digest=parent.digest,
            parent_analysis=analysis,
            knowledge=self.learning.notes(hits), agenda=self.learning.agenda,
        )

    # ---- DESIGN ---------------------------------------------------------------------------------------------
    async def _record_proposal(self, proposal: Proposal, parent: Trial, inspirations: list[Trial], hits: list[Hit],
                               facts: dict[str, Any]) -> Trial:
        """The proposal as a trial, with its calls and the knowledge shown, in one transaction: proposed (to be
        evaluated next), failed (no usable program) or rejected (not novel)."""
        fingerprint = program_fingerprint(proposal.code, self.task.program_name) if proposal.code else None
        trial = await self.record.io(self._write_proposal, proposal, parent, inspirations, hits, facts, fingerprint)
        self.budget.add_calls(proposal.llm_calls, proposal=True)
        if trial.status.finished:
            self._finished(trial)
        elif fingerprint is not None:  # evaluated next: `_evaluate_recorded` takes it from here
            self._fingerprints[trial.id] = fingerprint
        return trial

    def _write_proposal(self, proposal: Proposal, parent: Trial, inspirations: list[Trial], hits: list[Hit],
                        facts: dict[str, Any], fingerprint: str | None) -> Trial:
        code = proposal.code
        trial = self.record.add_trial(
            parent_ids=[parent.id, *proposal.extra_parent_ids], inspiration_ids=[t.id for t in inspirations],
            name=proposal.name, motivation=proposal.motivation, code=code,
            diff=unified_diff(parent.code, code, self.task.program_name) if code else "",
            proposer=proposal.proposer, model=proposal.model, fingerprint=fingerprint,
            facts={**facts, **proposal.facts}, budget=self.settings.trials,
        )
        self.record.add_llm_calls(trial.id, proposal.llm_calls)
        self.learning.record_shown(trial.id, hits)
        if proposal.status is ProposalStatus.NOT_NOVEL:
            return self.record.reject_trial(trial.id, "rejected:not_novel", proposal.error or "not novel")
        if proposal.status is not ProposalStatus.READY:
            return self.record.fail_trial(trial.id, "proposal_error", proposal.error or proposal.status.value)
        return trial

    # ---- EXPERIMENT -----------------------------------------------------------------------------------------
    async def _evaluate_seed(self, trial_pass: TrialPass) -> None:
        self.state.started += 1
        fingerprint = program_fingerprint(self.task.seed_program, self.task.program_name)
        trial = await self.record.io(
            self.record.add_trial, parent_ids=[], inspiration_ids=[], name="seed",
            motivation="the task's seed program", code=self.task.seed_program, diff="", proposer="seed", model=None,
            fingerprint=fingerprint,
        )
        trial_pass.trial_id = trial.id
        self._fingerprints[trial.id] = fingerprint
        await self._evaluate_recorded(trial.id)

    async def _evaluate_recorded(self, trial_id: int) -> None:
        """Evaluate a trial already in the record (status proposed), then analyse and commit its outcome.

        A program already evaluated (same fingerprint: comments and whitespace aside) is not run again:
        the trial reuses the recorded outcome and says so."""
        trial = self.population.get(trial_id) or self.record.trial(trial_id)  # its code and parents: as recorded
        fingerprint = self._fingerprints.pop(trial_id, None) or program_fingerprint(trial.code, self.task.program_name)
        trial_dir = self.run_dir / "trials" / str(trial_id)
        try:
            if self.eval_slots.locked():  # its first stage starts while it waits: the start's latency is hidden
                await self.engineer.start_ahead(trial.code, trial_dir)
            async with self.eval_slots:  # look for the original once a slot is ours: it may have finished meanwhile
                # the jail starts while the record marks the trial running (nothing of the candidate runs before
                # `evaluate`; a lost claim's start is dropped below), unless the program was seen: a repeat runs nothing
                starting = None if fingerprint in self._evaluated else asyncio.ensure_future(
                    self.engineer.start_ahead(trial.code, trial_dir))
                try:
                    original, trial, history = await self.record.io(self._start, trial, fingerprint)
                except ClaimLost:  # another runner took it over (this one's lease ran out): it evaluates it
                    return
                finally:
                    if starting is not None:
                        await starting
                if original is not None:
                    outcome = self.engineer.reuse(original)
                else:
                    assert history is not None
                    self._evaluated.add(fingerprint)
                    outcome = await self.engineer.evaluate(trial.code, trial_dir, history)
        finally:
            await self.engineer.drop_ahead(trial_dir)
        await self._analyze_and_commit(trial, outcome)

    def _start(self, trial: Trial, fingerprint: str) -> tuple[Trial | None, Trial, EvaluationHistory | None]:
        """(On the record's thread.) The original this program repeats, else the trial marked running and the
        history its gates compare it with."""
        running = self.record.mark_running_unless_repeat(trial.id, fingerprint)  # one statement: no lookup first
        if running is None:
            return self.record.find_fingerprint(fingerprint), trial, None
        return None, running, self.record.history(trial.parent_ids[0] if trial.parent_ids else None)

    # ---- ANALYZE --------------------------------------------------------------------------------------------
    async def _analyze_and_commit(self, trial: Trial, outcome: Outcome) -> None:
        cfg = self.task.config
        parent = self.population.get(trial.parent_ids[0]) if trial.parent_ids else None
        digest = digest_outcome(outcome, parent=parent, best=self.state.best,
                                direction=cfg.objective.direction, metric=cfg.objective.metric)
        self.budget.add_evaluation(outcome.seconds)
        try:
            finished = await self.record.io(self._commit, trial.id, outcome, digest, self.budget.wall_s())
        except ClaimLost:  # another runner took it over meanwhile: its outcome is the one recorded
            return
        self._finished(finished)  # the trial is complete from here on
        self.learning.analysed_here(finished.id)  # a pick of it as a parent needs no read of its analysis
        if self.crowning.challenges(finished):  # a new best is evaluated again before it is called the champion
            if self.crowning.evaluations_for(finished) > 1:  # evaluations take a slot; a decision alone does not
                async with self.eval_slots:
                    await self.crowning.consider(finished)
            else:
                await self.crowning.consider(finished)
        if outcome.reused_from is None:  # its worker goes on proposing while the trial is analysed
            async def analysis(_: TrialPass) -> None:
                await self._analyze(finished, outcome, digest, parent)

            task = asyncio.ensure_future(self._guarded(analysis, TrialPass(finished.id, parent)))
            self._analyses[finished.id] = task
            task.add_done_callback(lambda _: self._analyses.pop(finished.id, None))

    def _commit(self, trial_id: int, outcome: Outcome, digest: Digest, wall_s: float) -> Trial:
        finished = self.record.finish_trial(trial_id, outcome, digest)
        self.record.save_state("wall", {"seconds": wall_s})
        return finished

    async def _analyze(self, trial: Trial, outcome: Outcome, digest: Digest, parent: Trial | None) -> None:
        analysis = await self.learning.analyze(trial, outcome, digest, parent, self._siblings(trial))
        self.budget.add_calls(analysis.llm_calls, proposal=False)
        await self.learning.maybe_review(self.population, trial.id)

    def _siblings(self, trial: Trial) -> list[Trial]:
        if not trial.parent_ids:
            return []
        siblings = [t for t in self.population.recent
                    if t.scored and t.id != trial.id and t.parent_ids == trial.parent_ids]
        return sorted(siblings, key=lambda t: self.state.direction.sign() * float(t.score or 0.0), reverse=True)[:3]

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    def _claim_slot(self) -> bool:
        if self.state.stop_reason is not None or max(self.state.started, len(self.population)) >= self.settings.trials:
            return False
        in_flight = self.state.in_flight + len(self._analyses)  # the trials being analysed still spend
        reason = self.budget.stop_reason(in_flight, self.population.mean_eval_seconds())
        if reason is not None:
            self.state.stop_reason = reason
            return False
        self.state.started += 1
        self.state.in_flight += 1
        return True

    def _finished(self, trial: Trial) -> Trial:
        self._check_target()
        if self.observer is not None:
            self.observer.trial_finished(trial, self.state.best, self.population.counts())
        return trial

    def _check_target(self) -> None:
        best, target = self.state.best, self.settings.target_score
        if target is not None and best is not None and best.score is not None:
            if best.score == target or self.state.direction.better(best.score, target):
                self.state.stop_reason = f"reached target score {target:g} (trial #{best.id})"

    def _budget_tracker(self) -> BudgetTracker:
        s = self.settings
        budgets = Budgets(usd=s.budget_usd, tokens=s.budget_tokens, wall_s=s.budget_wall_s, eval_s=s.budget_eval_s)
        calls = self.record.llm_calls()
        spend = Spend(
            usd=sum(c.cost_usd for c in calls),
            tokens=sum(c.tokens_in + c.tokens_out for c in calls),
            eval_s=sum(t.seconds for t in self.population),
            wall_s_before=float((self.record.load_state("wall") or {}).get("seconds", 0.0)),
            proposals_priced=len({c.trial_id for c in calls if c.role in ("researcher", "repair")}),
        )
        return BudgetTracker(budgets=budgets, spend=spend)

    @staticmethod
    async def _gather(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

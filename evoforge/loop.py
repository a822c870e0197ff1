"""The conductor: runs learn → design → experiment → analyze trials concurrently until the stopping rule holds.

Each trial: sample a parent and inspirations and retrieve knowledge (LEARN), ask the researcher for a candidate
and pass it through the novelty gate (DESIGN), evaluate it in the sandbox with its gates (EXPERIMENT), digest and
analyse the outcome and write lessons back (ANALYZE). Every step is committed to the record before the next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoforge.analysis import digest_outcome
from evoforge.budget import Budgets, BudgetTracker, Spend
from evoforge.champion import Crowning
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.experiment import Engineer
from evoforge.experiment.gates.static import program_fingerprint
from evoforge.experiment.integrity import EvaluatorChanged
from evoforge.learning import Learning
from evoforge.memory.cognition import Hit
from evoforge.memory.record import Record
from evoforge.memory.sampling import Sampler
from evoforge.models import Digest, Outcome, Proposal, Trial, TrialStatus
from evoforge.observer import Observer
from evoforge.programs import unified_diff
from evoforge.research import Proposer, ResearchContext
from evoforge.state import LoopState
from evoforge.task import Task

__all__ = ["Conductor", "Observer"]

log = logging.getLogger(__name__)
INTERNAL_ERRORS_TO_STOP = 3  # unexpected exceptions in a row (each failing one trial or analysis) that stop the run
TRACEBACK_CHARS = 8000  # of an internal error's traceback, kept in the record


@dataclass
class TrialPass:
    """What one pass has got to, so an internal error can be pinned on its trial: the parent, then the trial."""

    trial_id: int | None = None
    parent: Trial | None = None


class Conductor:
    """Runs one run's trials: the seed first, then `concurrency` evaluations in flight (and as many proposals)."""

    def __init__(self, *, task: Task, record: Record, run_dir: Path, settings: RunSettings, proposer: Proposer,
                 engineer: Engineer, sampler: Sampler, learning: Learning, observer: Observer | None = None) -> None:
        self.task, self.record, self.run_dir, self.settings = task, record, run_dir, settings
        self.proposer, self.engineer, self.sampler, self.learning = proposer, engineer, sampler, learning
        self.observer = observer
        self.state = LoopState(direction=task.config.objective.direction)
        self.state.load(record.trials())
        self.state.started = len(self.state.trials)
        self.budget = self._budget_tracker()
        self.eval_slots = asyncio.Semaphore(settings.concurrency)
        self.crowning = Crowning(task, record, engineer, run_dir)
        self._fingerprints: dict[int, str] = {}  # of the trials recorded and not yet evaluated in this session
        bandit_state = record.load_state("bandit")
        if bandit_state:
            proposer.load_state(bandit_state)
        sampler_state = record.load_state("sampler")
        if sampler_state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(sampler_state)

    # ---- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> str:
        """Run until the stopping rule holds; returns why it stopped. RunError when the run cannot go on: the seed
        has no score, the LLM endpoint is unreachable, or internal errors came several times in a row."""
        requeued = self.record.requeue_in_flight()
        if not self.state.trials:
            await self._guarded(self._evaluate_seed, TrialPass())
            if self.state.best is None:
                await self._repair_seed()
        if requeued:
            await self._gather(self._guarded(self._evaluate_pass, TrialPass(trial_id)) for trial_id in requeued)
        if self.state.best is None:
            raise RunError(self.state.why_no_score(self.run_dir))
        self._check_target()  # a run resumed with a target its best trial has reached already starts nothing
        # More workers than evaluation slots: while K trials evaluate, `prefetch` more are being proposed, so a
        # freed slot finds its next candidate ready and LLM latency hides behind evaluation time.
        prefetch = self.settings.prefetch if self.settings.prefetch is not None else 2 * self.settings.concurrency
        await self._gather(self._worker() for _ in range(self.settings.concurrency + prefetch))
        if self.state.halted is not None:
            raise RunError(self.state.halted)
        return self.state.stop_reason or f"reached {self.settings.trials} trials"

    async def _worker(self) -> None:
        while self._claim_slot():
            try:
                await self._guarded(self._one_trial, TrialPass())
            finally:
                self.state.in_flight -= 1

    async def _guarded(self, work: Callable[[TrialPass], Awaitable[None]], trial_pass: TrialPass) -> None:
        """Run one trial's pass; an unexpected exception fails that trial (or its analysis) as an internal error,
        traceback recorded, and the run goes on: it stops only when `INTERNAL_ERRORS_TO_STOP` come in a row."""
        try:
            await work(trial_pass)
        except EvaluatorChanged:
            raise  # scores would stop being comparable: the run stops (the trial in flight runs again on resume)
        except Exception as exc:  # noqa: BLE001 - a bug met by one trial must not cancel every other one
            self._internal_error(trial_pass, exc)
        else:
            self.state.internal_errors.clear()

    async def _evaluate_pass(self, trial_pass: TrialPass) -> None:
        assert trial_pass.trial_id is not None
        await self._evaluate_recorded(trial_pass.trial_id)

    async def _one_trial(self, trial_pass: TrialPass) -> None:
        parent, inspirations = self._sample()  # LEARN
        trial_pass.parent = parent
        hits = await self.learning.retrieve(parent, list(self.state.failures)[: self.task.config.research.num_failures])
        ctx = self._context(parent, inspirations, hits)
        self.state.pending_parents[parent.id] += 1
        try:
            proposal = await self._propose(ctx)  # DESIGN (+ novelty gate)
            if proposal.unreachable:
                self._unreachable(proposal)
                return
            trial_id = self._record_proposal(proposal, parent, inspirations, hits)
            trial_pass.trial_id = trial_id
        finally:
            self.state.pending_parents[parent.id] -= 1
        if self.state.trials[trial_id].status is TrialStatus.PROPOSED:
            await self._evaluate_recorded(trial_id)  # EXPERIMENT + ANALYZE

    # ---- LEARN ----------------------------------------------------------------------------------------------
    def _sample(self) -> tuple[Trial, list[Trial]]:
        trials = self.state.pool  # kept up to date trial by trial: sampling does not rescan the run
        direction, research = self.task.config.objective.direction, self.task.config.research
        parent = self.sampler.sample_parent(trials, direction, self.state.pending_parents)
        inspirations = self.sampler.sample_inspirations(trials, parent, research.num_inspirations, direction)
        sampler_state = self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else None
        if sampler_state:
            self.record.save_state("sampler", sampler_state)
        return parent, inspirations

    def _context(self, parent: Trial, inspirations: list[Trial], hits: list[Hit]) -> ResearchContext:
        cfg = self.task.config
        return ResearchContext(
            problem=self.task.problem_text, program_name=self.task.program_name, metric=cfg.objective.metric,
            direction=cfg.objective.direction, parent=parent, inspirations=tuple(inspirations),
            failures=tuple(list(self.state.failures)[: cfg.research.num_failures]), recent=tuple(self.state.recent),
            parent_digest=parent.digest, parent_analysis=self.learning.parent_analysis(parent),
            knowledge=self.learning.notes(hits), agenda=self.learning.agenda,
        )

    # ---- DESIGN ---------------------------------------------------------------------------------------------
    async def _propose(self, ctx: ResearchContext) -> Proposal:
        """Ask the researcher; a near-duplicate of an evaluated trial goes back once with that trial shown, and is
        rejected if it is still one (the offline proposer, which only tunes constants, skips this gate)."""
        proposal = await self.proposer.propose(ctx)
        if proposal.error is not None or proposal.proposer == "offline":
            return proposal
        evaluated = self.state.novelty_pool(ctx.parent)
        near, calls = await self.learning.near_duplicate(proposal, evaluated)
        if near is None:
            return dataclasses.replace(proposal, llm_calls=proposal.llm_calls + tuple(calls))
        second = await self.proposer.propose(dataclasses.replace(ctx, near_duplicate=near))
        all_calls = proposal.llm_calls + tuple(calls) + second.llm_calls
        if second.error is not None:
            return dataclasses.replace(second, llm_calls=all_calls)
        again, more = await self.learning.near_duplicate(second, evaluated)
        second = dataclasses.replace(second, llm_calls=all_calls + tuple(more))
        if again is not None:
            return dataclasses.replace(second, error=f"not novel: too close to trial #{again.id} ('{again.name}') "
                                                     "even after being shown it")
        return second

    def _unreachable(self, proposal: Proposal) -> None:
        """A proposal that failed because no model could be reached is no trial: its calls are recorded and its
        slot given back (the next try waits out the client's backoff); once the proposer's endpoints are down
        (several such failures in a row), the run stops, resumable, instead of failing every trial left."""
        self.record.add_llm_calls(None, proposal.llm_calls)
        self.state.started -= 1
        down = self.proposer.unreachable()
        if down is not None:
            self._halt(f"the LLM endpoint is unreachable ({down}); nothing is lost: once it answers again (or "
                       f"llm.base_url is fixed), continue with `evoforge resume {self.run_dir}`")

    def _internal_error(self, trial_pass: TrialPass, exc: Exception) -> None:
        """Record `exc` against the trial it broke: an unfinished trial fails with class `internal_error`, a finished
        one keeps its outcome and gets a failed analysis; either way with the traceback. A failure before the trial
        was recorded is recorded as a failed trial of its own."""
        trace = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
        lines = str(exc).strip().splitlines()
        what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        trial_id = trial_pass.trial_id
        if trial_id is None:
            parent = trial_pass.parent
            trial_id = self.record.add_trial(
                parent_ids=[parent.id] if parent is not None else [], inspiration_ids=[], name="internal error",
                motivation="", code="", diff="", proposer=self.proposer.name, model=None,
            )
        if self.record.trial(trial_id).status.finished:
            data = {"error": f"internal error: {what}", "source": "internal_error", "traceback": trace}
            self.record.add_analysis(trial_id, "analysis", f"internal error: {what}", data)
            where = "its analysis"
        else:
            self.record.fail_trial(trial_id, "internal_error", f"{what}\n{trace}")
            self.state.put(self.record.trial(trial_id))
            where = "the trial failed"
        log.error("trial #%d: internal error (%s; %s, traceback in the record): please report it", trial_id, what,
                  where)
        self.state.internal_errors.append(f"trial #{trial_id}: {what}")
        if len(self.state.internal_errors) >= INTERNAL_ERRORS_TO_STOP:
            self._halt(f"{len(self.state.internal_errors)} internal errors in a row, the last in "
                       f"{self.state.internal_errors[-1]} (tracebacks: `evoforge show {self.run_dir} {trial_id}`); "
                       "please report it. Nothing is lost: `evoforge resume` continues the run")

    def _halt(self, reason: str) -> None:
        """Start no new trial; once the trials in flight are done the run ends with `reason` as an error."""
        if self.state.halted is None:
            self.state.halted = reason
        self.state.stop_reason = self.state.stop_reason or reason

    def _record_proposal(self, proposal: Proposal, parent: Trial, inspirations: list[Trial], hits: list[Hit]) -> int:
        code = proposal.code
        fingerprint = program_fingerprint(code, self.task.program_name) if code else None
        trial_id = self.record.add_trial(
            parent_ids=[parent.id, *proposal.extra_parent_ids], inspiration_ids=[t.id for t in inspirations],
            name=proposal.name,
            motivation=proposal.motivation, code=code,
            diff=unified_diff(parent.code, code, self.task.program_name) if code else "",
            proposer=proposal.proposer, model=proposal.model, fingerprint=fingerprint,
        )
        self.record.add_llm_calls(trial_id, proposal.llm_calls)
        self.learning.record_shown(trial_id, hits)
        self.budget.add_calls(proposal.llm_calls, proposal=True)
        if proposal.error is not None and proposal.error.startswith("not novel"):
            self.record.reject_trial(trial_id, "rejected:not_novel", proposal.error)
            self._finished(trial_id)
        elif proposal.error is not None:
            self.record.fail_trial(trial_id, "proposal_error", proposal.error)
            self._finished(trial_id)
        else:
            self.state.put(self.record.trial(trial_id))
            if fingerprint is not None:  # evaluated next: `_evaluate_recorded` takes it from here
                self._fingerprints[trial_id] = fingerprint
        return trial_id

    # ---- EXPERIMENT -----------------------------------------------------------------------------------------
    async def _evaluate_seed(self, trial_pass: TrialPass) -> None:
        self.state.started += 1
        fingerprint = program_fingerprint(self.task.seed_program, self.task.program_name)
        trial_id = trial_pass.trial_id = self.record.add_trial(
            parent_ids=[], inspiration_ids=[], name="seed", motivation="the task's seed program",
            code=self.task.seed_program, diff="", proposer="seed", model=None, fingerprint=fingerprint,
        )
        self._fingerprints[trial_id] = fingerprint
        await self._evaluate_recorded(trial_id)

    async def _evaluate_recorded(self, trial_id: int) -> None:
        """Evaluate a trial already in the record (status proposed), then analyse and commit its outcome.

        A program already evaluated (same fingerprint: comments and whitespace aside) is not run again:
        the trial reuses the recorded outcome and says so."""
        trial = self.state.trials.get(trial_id) or self.record.trial(trial_id)  # its code and parents: as recorded
        fingerprint = self._fingerprints.pop(trial_id, None) or program_fingerprint(trial.code, self.task.program_name)
        async with self.eval_slots:  # look for the original once a slot is ours: it may have finished meanwhile
            original = self.record.find_fingerprint(fingerprint)
            if original is not None and original.id != trial_id:
                outcome = self.engineer.reuse(original)
            else:
                self.record.mark_running(trial_id)
                self.state.put(dataclasses.replace(trial, status=TrialStatus.RUNNING))
                history = self.record.history(trial.parent_ids[0] if trial.parent_ids else None)
                outcome = await self.engineer.evaluate(trial.code, self.run_dir / "trials" / str(trial_id), history)
        await self._analyze_and_commit(trial, outcome)

    async def _repair_seed(self) -> None:
        """A failing seed, with an LLM researcher: ask it to repair the program from its error, up to
        `research.seed_repairs` times (each attempt a trial, counted in the run's trials; the next attempt repairs
        the last one that ran), until one scores. The offline proposer only tunes constants: it is never asked."""
        attempts = self.task.config.research.seed_repairs
        broken = min(self.state.trials.values(), key=lambda t: t.id)
        if self.proposer.name == "offline" or attempts == 0 or not broken.status.finished:
            return
        for _ in range(attempts):
            if self.state.best is not None or self.state.halted is not None or not self._claim_slot():
                return
            try:
                await self._guarded(functools.partial(self._repair_once, broken), TrialPass())
            finally:
                self.state.in_flight -= 1
            last = max(self.state.trials.values(), key=lambda t: t.id)
            if last.id != broken.id and last.code and last.status is TrialStatus.FAILED:
                broken = last

    async def _repair_once(self, broken: Trial, trial_pass: TrialPass) -> None:
        trial_pass.parent = broken
        error = f"{broken.error_class or broken.status.value}: {broken.error_message or 'no message'}"
        ctx = dataclasses.replace(self._context(broken, [], []), fix_error=error)
        proposal = await self.proposer.propose(ctx)
        if proposal.unreachable:
            self._unreachable(proposal)
            return
        trial_id = trial_pass.trial_id = self._record_proposal(proposal, broken, [], [])
        if self.state.trials[trial_id].status is TrialStatus.PROPOSED:
            await self._evaluate_recorded(trial_id)

    # ---- ANALYZE --------------------------------------------------------------------------------------------
    async def _analyze_and_commit(self, trial: Trial, outcome: Outcome) -> None:
        cfg = self.task.config
        parent = self.state.trials.get(trial.parent_ids[0]) if trial.parent_ids else None
        digest = digest_outcome(outcome, parent=parent, best=self.state.best,
                                direction=cfg.objective.direction, metric=cfg.objective.metric)
        self.record.finish_trial(trial.id, outcome, digest)  # the trial is complete from here on
        self.budget.add_evaluation(outcome.seconds)
        self.record.save_state("wall", {"seconds": self.budget.wall_s()})
        finished = self._finished(trial.id)
        if self.crowning.challenges(finished):  # a new best is evaluated again before it is called the champion
            async with self.eval_slots:
                await self.crowning.consider(finished)
        self._observe_bandit(finished, parent)
        if outcome.reused_from is None:  # other workers keep proposing while this one analyses
            await self._analyze(finished, outcome, digest, parent)

    async def _analyze(self, trial: Trial, outcome: Outcome, digest: Digest, parent: Trial | None) -> None:
        analysis = await self.learning.analyze(trial, outcome, digest, parent, self._siblings(trial))
        self.budget.add_calls(analysis.llm_calls, proposal=False)
        await self.learning.maybe_review(self.state.pool, trial.id)

    def _siblings(self, trial: Trial) -> list[Trial]:
        if not trial.parent_ids:
            return []
        siblings = [t for t in self.state.recent if t.scored and t.id != trial.id and t.parent_ids == trial.parent_ids]
        return sorted(siblings, key=lambda t: self.state.direction.sign() * float(t.score or 0.0), reverse=True)[:3]

    def _observe_bandit(self, trial: Trial, parent: Trial | None) -> None:
        """Tell an ensemble proposer how its model did: reward 1 when the child beat its parent, else 0."""
        if trial.model is None or parent is None or parent.score is None:
            return
        improved = trial.scored and self.state.direction.better(float(trial.score or 0.0), parent.score)
        calls = self.record.llm_calls(trial.id)
        proposing = [c for c in calls if c.role in ("researcher", "repair")]
        temperature = proposing[0].temperature if proposing else None
        self.proposer.observe(trial.model, temperature, 1.0 if improved else 0.0, sum(c.cost_usd for c in proposing))
        state = self.proposer.state_dict()
        if state:
            self.record.save_state("bandit", state)

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    def _claim_slot(self) -> bool:
        if self.state.stop_reason is not None or self.state.started >= self.settings.trials:
            return False
        reason = self.budget.stop_reason(self.state.in_flight, self.state.mean_eval_seconds())
        if reason is not None:
            self.state.stop_reason = reason
            return False
        self.state.started += 1
        self.state.in_flight += 1
        return True

    def _finished(self, trial_id: int) -> Trial:
        trial = self.record.trial(trial_id)
        self.state.put(trial)
        self._check_target()
        if self.observer is not None:
            self.observer.trial_finished(trial, self.state.best, self.state.counts())
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
            eval_s=sum(t.seconds for t in self.state.trials.values()),
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

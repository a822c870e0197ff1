"""What the conductor does when a trial goes wrong: an internal error pinned on its trial (the run stops after
several in a row), an unreachable LLM endpoint (the run halts, resumable), and the repair of a failing seed.

A mixin of `Conductor` (loop.py), kept apart so the loop itself reads top to bottom in one screen.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from evoforge.experiment.integrity import EvaluatorChanged
from evoforge.memory.population import Population
from evoforge.memory.record import Record
from evoforge.models import Proposal, Trial, TrialStatus
from evoforge.research import Proposer, ResearchContext
from evoforge.state import LoopState
from evoforge.task import Task

log = logging.getLogger("evoforge.loop")
INTERNAL_ERRORS_TO_STOP = 3  # unexpected exceptions in a row (each failing one trial or analysis) that stop the run
TRACEBACK_CHARS = 8000  # of an internal error's traceback, kept in the record


@dataclass
class TrialPass:
    """What one pass has got to, so an internal error can be pinned on its trial: the parent, then the trial."""

    trial_id: int | None = None
    parent: Trial | None = None


class Recovery:
    """Internal errors, unreachable endpoints and seed repair, for `Conductor`."""

    task: Task
    record: Record
    run_dir: Path
    proposer: Proposer
    population: Population
    state: LoopState
    _claim_slot: Callable[[], bool]
    _context: Callable[..., Awaitable[ResearchContext]]
    _record_proposal: Callable[..., Awaitable[Trial]]
    _evaluate_recorded: Callable[[int], Awaitable[None]]

    async def _guarded(self, work: Callable[[TrialPass], Awaitable[None]], trial_pass: TrialPass) -> None:
        """Run one trial's pass; an unexpected exception fails that trial (or its analysis) as an internal error,
        traceback recorded, and the run goes on: it stops only when `INTERNAL_ERRORS_TO_STOP` come in a row."""
        try:
            await work(trial_pass)
        except EvaluatorChanged:
            raise  # scores would stop being comparable: the run stops (the trial in flight runs again on resume)
        except Exception as exc:  # noqa: BLE001 - a bug met by one trial must not cancel every other one
            await self._internal_error(trial_pass, exc)
        else:
            self.state.internal_errors.clear()

    async def _internal_error(self, trial_pass: TrialPass, exc: Exception) -> None:
        """Record `exc` against the trial it broke: an unfinished trial fails with class `internal_error`, a finished
        one keeps its outcome and gets a failed analysis; either way with the traceback. A failure before the trial
        was recorded is recorded as a failed trial of its own."""
        trace = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
        lines = str(exc).strip().splitlines()
        what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        trial_id, where = await self.record.io(self._pin_error, trial_pass, what, trace)
        log.error("trial #%d: internal error (%s; %s, traceback in the record): please report it", trial_id, what,
                  where)
        self.state.internal_errors.append(f"trial #{trial_id}: {what}")
        if len(self.state.internal_errors) >= INTERNAL_ERRORS_TO_STOP:
            self._halt(f"{len(self.state.internal_errors)} internal errors in a row, the last in "
                       f"{self.state.internal_errors[-1]} (tracebacks: `evoforge show {self.run_dir} {trial_id}`); "
                       "please report it. Nothing is lost: `evoforge resume` continues the run")

    def _pin_error(self, trial_pass: TrialPass, what: str, trace: str) -> tuple[int, str]:
        """(On the record's thread.) Fail the pass's trial, or give its finished trial a failed analysis."""
        trial = self.population.get(trial_pass.trial_id) if trial_pass.trial_id is not None else None
        if trial is None:
            parent = trial_pass.parent
            trial = self.record.add_trial(
                parent_ids=[parent.id] if parent is not None else [], inspiration_ids=[], name="internal error",
                motivation="", code="", diff="", proposer=self.proposer.name, model=None,
            )
        if trial.status.finished:
            data = {"error": f"internal error: {what}", "source": "internal_error", "traceback": trace}
            self.record.add_analysis(trial.id, "analysis", f"internal error: {what}", data)
            return trial.id, "its analysis"
        self.record.fail_trial(trial.id, "internal_error", f"{what}\n{trace}")
        return trial.id, "the trial failed"

    def _halt(self, reason: str) -> None:
        """Start no new trial; once the trials in flight are done the run ends with `reason` as an error."""
        if self.state.halted is None:
            self.state.halted = reason
        self.state.stop_reason = self.state.stop_reason or reason

    async def _unreachable(self, proposal: Proposal) -> None:
        """A proposal that failed because no model could be reached is no trial: its calls are recorded and its
        slot given back (the next try waits out the client's backoff); once the proposer's endpoints are down
        (several such failures in a row), the run stops, resumable, instead of failing every trial left."""
        await self.record.io(self.record.add_llm_calls, None, proposal.llm_calls)
        self.state.started -= 1
        down = self.proposer.unreachable()
        if down is not None:
            self._halt(f"the LLM endpoint is unreachable ({down}); nothing is lost: once it answers again (or "
                       f"llm.base_url is fixed), continue with `evoforge resume {self.run_dir}`")

    async def _repair_seed(self) -> None:
        """A failing seed, with an LLM researcher: ask it to repair the program from its error, up to
        `research.seed_repairs` times (each attempt a trial, counted in the run's trials; the next attempt repairs
        the last one that ran), until one scores. A proposer that only tunes constants is never asked."""
        attempts = self.task.config.research.seed_repairs
        broken = self.population[0]
        if self.proposer.tunes_constants or attempts == 0 or not broken.status.finished:
            return
        for _ in range(attempts):
            if self.state.best is not None or self.state.halted is not None or not self._claim_slot():
                return
            try:
                await self._guarded(functools.partial(self._repair_once, broken), TrialPass())
            finally:
                self.state.in_flight -= 1
            last = self.population[-1]
            if last.id != broken.id and last.code and last.status is TrialStatus.FAILED:
                broken = last

    async def _repair_once(self, broken: Trial, trial_pass: TrialPass) -> None:
        trial_pass.parent = broken
        error = f"{broken.error_class or broken.status.value}: {broken.error_message or 'no message'}"
        ctx = dataclasses.replace(await self._context(broken, [], []), fix_error=error)
        proposal = await self.proposer.propose(ctx)
        if proposal.unreachable:
            await self._unreachable(proposal)
            return
        trial = await self._record_proposal(proposal, broken, [], [], {})
        trial_pass.trial_id = trial.id
        if trial.status is TrialStatus.PROPOSED:
            await self._evaluate_recorded(trial.id)

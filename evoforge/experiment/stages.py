"""The evaluation cascade: runs a trial's stages cheapest first, streams each stage's telemetry to the curve gates
(a prune stops the stage's process group), applies the promotion rule between stages, and assembles the Outcome.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from evoforge.config import GatesConfig, StageConfig
from evoforge.experiment.gates import CurveGate, CurveState, SuspiciousMonitor, build_curve_gates, check_promotion
from evoforge.experiment.telemetry_stream import TelemetryTail
from evoforge.experiment.waits import StopEvent
from evoforge.models import (
    Direction,
    EvaluationHistory,
    GateDecision,
    Outcome,
    StageResult,
    TelemetryPoint,
    TrialStatus,
)

POLL_S = 0.1
MAX_POINTS = 100_000  # telemetry points kept per trial; later points are still judged, not stored


@dataclass(frozen=True)
class StageRun:
    """What one stage's process gave: its result (PRUNED when it was stopped) and the ends of its output."""

    result: StageResult
    stdout_tail: str = ""
    stderr_tail: str = ""


Launch = Callable[[StageConfig, asyncio.Event], Awaitable[StageRun]]


class StageWatch:
    """Feeds one stage's telemetry points to its curve gates and keeps every point and decision."""

    def __init__(self, gates: Sequence[CurveGate], state: CurveState, kept: list[TelemetryPoint]) -> None:
        self.gates, self.state, self.kept = list(gates), state, kept
        self.decisions: list[GateDecision] = []
        self.pruned: GateDecision | None = None

    def feed(self, points: Sequence[TelemetryPoint]) -> bool:
        """Judge `points` in order; True once a gate has pruned (points after that are kept, not judged)."""
        for point in points:
            if len(self.kept) < MAX_POINTS:
                self.kept.append(point)
                self.state.series.setdefault(point.name, []).append(point)
            if self.pruned is not None:
                continue
            for gate in self.gates:
                decision = gate.check(point, self.state)
                if decision is None:
                    continue
                self.decisions.append(decision)
                if decision.action == "prune":
                    self.pruned = decision
                    break
        return self.pruned is not None


class Cascade:
    """One trial's evaluation: `launch(stage, stop)` runs a stage's process; the cascade watches and judges it."""

    def __init__(self, *, stages: Sequence[StageConfig], gates: GatesConfig, direction: Direction,
                 history: EvaluationHistory, launch: Launch, telemetry_path: Callable[[str], Path],
                 poll_s: float = POLL_S) -> None:
        self.stages, self.gates, self.direction, self.history = list(stages), gates, direction, history
        self.launch, self.telemetry_path, self.poll_s = launch, telemetry_path, poll_s
        self.suspicious = SuspiciousMonitor(gates.anomaly.suspicious)
        self.points: list[TelemetryPoint] = []
        self.decisions: list[GateDecision] = []
        self.results: list[StageResult] = []

    async def run(self) -> Outcome:
        """Run the stages in order until one fails, is pruned or is not promoted; returns the outcome."""
        last = StageRun(StageResult(name="", status=TrialStatus.FAILED))
        for index, stage in enumerate(self.stages):
            last, watch = await self._run_stage(stage)
            self.decisions += watch.decisions
            result = last.result
            if watch.pruned is not None:
                result = _pruned(result, stage.name, watch.pruned)
                self.results.append(result)
                return self._outcome(TrialStatus.PRUNED, result, last)
            self.results.append(result)
            if result.status is not TrialStatus.SUCCEEDED:
                return self._outcome(TrialStatus.FAILED, result, last)
            self.decisions += self.suspicious.check_final(result.metrics, stage.name)
            if index == len(self.stages) - 1:
                break
            assert result.score is not None
            promotion = check_promotion(stage, result.score, self.history, self.direction)
            self.decisions.append(promotion)
            if promotion.action != "promote":
                failed = replace(result, error_class=f"pruned:{promotion.gate}", error_message=promotion.reason)
                return self._outcome(TrialStatus.PRUNED, failed, last)
        return self._outcome(TrialStatus.SUCCEEDED, last.result, last)

    async def _run_stage(self, stage: StageConfig) -> tuple[StageRun, StageWatch]:
        """Launch the stage and poll its telemetry every `poll_s` until the process ends; a prune sets the stop
        event. The stage runs in this task (no task of its own, no hop through the event loop before it starts):
        the polls are timer callbacks, and a poll that raises stops the stage, whose end then raises that error."""
        path = self.telemetry_path(stage.name)
        path.unlink(missing_ok=True)
        state = CurveState(stage=stage.name, history=self.history)
        watch = StageWatch(build_curve_gates(self.gates, stage.name, self.history, self.suspicious), state,
                           self.points)
        stop = StopEvent()  # a wait for the stage can follow it without a task of its own (waits.py)
        poller = _Poller(TelemetryTail(path, stage.name, time.time()), watch, stop, self.poll_s)
        try:
            run = await self.launch(stage, stop)
        finally:
            poller.cancel()
        if poller.error is not None:
            raise poller.error
        watch.feed(poller.tail.drain())
        return run, watch

    def _outcome(self, status: TrialStatus, result: StageResult, last: StageRun) -> Outcome:
        seconds = sum(r.seconds for r in self.results)
        saved = 0.0
        if status is TrialStatus.PRUNED and self.history.full_seconds:
            saved = max(statistics.fmean(self.history.full_seconds) - seconds, 0.0)
        done = status is TrialStatus.SUCCEEDED
        return Outcome(
            status=status,
            score=result.score if done else None,
            metrics=result.metrics if status is not TrialStatus.PRUNED else {},
            error_class=None if done else result.error_class,
            error_message=None if done else result.error_message,
            seconds=seconds,
            seconds_saved=saved,
            stdout_tail=last.stdout_tail,
            stderr_tail=last.stderr_tail,
            stages=tuple(self.results),
            telemetry=tuple(self.points),
            decisions=tuple(self.decisions),
            suspect=any(d.action == "flag" for d in self.decisions),
        )


class _Poller:
    """Feeds a running stage's new telemetry to its watch every `poll_s` seconds (a timer callback of the running
    loop); sets `stop` once a gate prunes, or once a poll raises (`error`, which the stage's end then raises)."""

    def __init__(self, tail: TelemetryTail, watch: StageWatch, stop: asyncio.Event, poll_s: float) -> None:
        self.tail, self.watch, self.stop, self.poll_s = tail, watch, stop, poll_s
        self.error: BaseException | None = None
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = self.loop.call_later(poll_s, self._poll)

    def _poll(self) -> None:
        self.handle = None
        if self.stop.is_set():
            return  # pruned: the rest is read once the stage has ended
        try:
            pruned = self.watch.feed(self.tail.poll())
        except Exception as exc:  # noqa: BLE001 - raised where the stage ends
            self.error = exc
            pruned = True
        if pruned:
            self.stop.set()
        else:
            self.handle = self.loop.call_later(self.poll_s, self._poll)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _pruned(result: StageResult, stage: str, decision: GateDecision) -> StageResult:
    """The stage's result as stopped by `decision` (its score, if it got one, is dropped)."""
    return replace(result, status=TrialStatus.PRUNED, score=None, metrics={},
                   error_class=f"pruned:{decision.gate}", error_message=f"stage '{stage}': {decision.reason}")

"""The small base every curve gate implements: see one new telemetry point and the stage so far, maybe decide.

Also what they share: the running best of a recorded curve at a step, direction-aware.
"""

from __future__ import annotations

import abc
import bisect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evoforge.config import CurveGateConfig
from evoforge.models import Curve, Direction, EvaluationHistory, GateDecision, TelemetryPoint


@dataclass
class CurveState:
    """What a curve gate sees besides the new point: the stage, the history, and this stage's points by metric
    (the new point included)."""

    stage: str
    history: EvaluationHistory
    series: dict[str, list[TelemetryPoint]] = field(default_factory=dict)


class CurveGate(abc.ABC):
    """A rule that watches telemetry while a stage runs.

    The stage runner calls `check` once per point, in arrival order, after adding the point to `state.series`;
    a decision with action "prune" stops the stage at once, "flag" marks the trial suspect. A gate returns a
    decision at most once per cause; it never sees points after it pruned.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        """The gate's verdict on `point`, or None to let the stage go on."""


class MetricGate(CurveGate):
    """A curve gate on one metric with a direction, a warm-up and an optional list of stages.

    One instance watches one stage of one trial: it keeps the running best of its metric (finite values only).
    """

    def __init__(self, config: CurveGateConfig) -> None:
        self.config = config
        self.best: float | None = None

    def applies(self, point: TelemetryPoint, state: CurveState) -> bool:
        """Update the running best; True for a finite point of the watched metric, past warm-up, in a watched
        stage."""
        cfg = self.config
        if point.name != cfg.metric or not math.isfinite(point.value):
            return False
        if self.best is None or cfg.direction.better(point.value, self.best):
            self.best = point.value
        return (point.step is not None and point.step >= cfg.warmup_steps
                and (cfg.stages is None or state.stage in cfg.stages))

    def worse(self, value: float, reference: float) -> bool:
        return self.config.direction.better(reference, value)

    def prune(self, point: TelemetryPoint, state: CurveState, reason: str, **evidence: Any) -> GateDecision:
        facts = {"metric": point.name, "step": point.step, "value": point.value, **evidence}
        return GateDecision(gate=self.name, stage=state.stage, action="prune", reason=reason, evidence=facts)


class RunningCurve:
    """A recorded curve as its running best by step, for fast look-ups: `at(step)` is the best value the curve
    had reached at or before `step` (None before its first finite point)."""

    def __init__(self, curve: Curve, direction: Direction) -> None:
        self.steps: list[int] = []
        self.bests: list[float] = []
        best: float | None = None
        for step, value, _ in sorted(curve, key=lambda p: p[0]):
            if math.isfinite(value) and (best is None or direction.better(value, best)):
                best = value
            if best is not None:
                self.steps.append(step)
                self.bests.append(best)

    def at(self, step: int) -> float | None:
        i = bisect.bisect_right(self.steps, step)
        return self.bests[i - 1] if i else None


def fmt(value: float) -> str:
    return f"{value:.4g}"

"""Anomaly monitors: a NaN or infinite reported value stops the trial at once; a run far slower than its parent at
the same step stops it; a value beyond a configured bound (loss below the data's entropy) flags it as suspect.

All three decide under the gate name "anomaly"; evidence["monitor"] says which ("nan", "slowdown", "suspicious").
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from evoforge.config import Bound, SlowdownConfig
from evoforge.experiment.gates._base import CurveGate, CurveState, fmt
from evoforge.models import EvaluationHistory, GateDecision, TelemetryPoint

GATE = "anomaly"


def _decision(stage: str, action: str, reason: str, **evidence: Any) -> GateDecision:
    return GateDecision(gate=GATE, stage=stage, action=action, reason=reason, evidence=evidence)


def _step_text(step: int | None) -> str:
    return f"at step {step}" if step is not None else "(no step)"


class NanMonitor(CurveGate):
    """Prunes on the first NaN or infinite value of any metric."""

    name = GATE

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        if math.isfinite(point.value):
            return None
        what = "NaN" if math.isnan(point.value) else ("+inf" if point.value > 0 else "-inf")
        return _decision(state.stage, "prune", f"{point.name} is {what} {_step_text(point.step)}",
                         monitor="nan", metric=point.name, step=point.step, value=what, reference=None)


class SlowdownMonitor(CurveGate):
    """Prunes when the trial reaches a step later than `factor` x the time the parent took to reach it.

    The parent's time at a step is interpolated between its recorded steps (any metric of the stage); steps
    beyond the parent's last are not judged. Never fires before `warmup_steps` or `min_seconds`.
    """

    name = GATE

    def __init__(self, config: SlowdownConfig, stage: str, history: EvaluationHistory) -> None:
        self.config = config
        times: dict[int, float] = {}
        for curve in history.parent_curves.get(stage, {}).values():
            for step, _, t in curve:
                times[step] = min(t, times.get(step, t))
        self.steps = sorted(times)
        self.times = [times[s] for s in self.steps]
        self.last_step: int | None = None

    def parent_time(self, step: int) -> float | None:
        """The parent's seconds to reach `step`, interpolated; None outside its recorded steps."""
        if not self.steps or step < self.steps[0] or step > self.steps[-1]:
            return None
        i = bisect.bisect_left(self.steps, step)
        if self.steps[i] == step:
            return self.times[i]
        (s0, t0), (s1, t1) = (self.steps[i - 1], self.times[i - 1]), (self.steps[i], self.times[i])
        return t0 + (t1 - t0) * (step - s0) / (s1 - s0)

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        cfg, step = self.config, point.step
        if step is None or step == self.last_step or step < cfg.warmup_steps or point.t < cfg.min_seconds:
            return None
        self.last_step = step
        parent_t = self.parent_time(step)
        if parent_t is None or point.t <= cfg.factor * parent_t:
            return None
        return _decision(
            state.stage, "prune",
            f"step {step} reached after {point.t:.1f}s, over {cfg.factor:g}x the parent's {parent_t:.1f}s",
            monitor="slowdown", step=step, value=point.t, reference=parent_t, factor=cfg.factor,
        )


def out_of_bound(value: float, bound: Bound) -> str | None:
    """"below B" / "above B" when `value` crosses `bound`, else None."""
    if bound.below is not None and value < bound.below:
        return f"below {bound.below:g}"
    if bound.above is not None and value > bound.above:
        return f"above {bound.above:g}"
    return None


class SuspiciousMonitor(CurveGate):
    """Flags (once per metric) a reported value beyond its configured bound: the trial is marked suspect."""

    name = GATE

    def __init__(self, bounds: Mapping[str, Bound]) -> None:
        self.bounds = dict(bounds)
        self.flagged: set[str] = set()

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        return self._judge(point.name, point.value, point.step, state.stage, "telemetry")

    def check_final(self, metrics: Mapping[str, Any], stage: str) -> list[GateDecision]:
        """Flags for the numeric final metrics of a stage that cross their bounds."""
        flags = []
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                decision = self._judge(name, float(value), None, stage, "final")
                if decision is not None:
                    flags.append(decision)
        return flags

    def _judge(self, name: str, value: float, step: int | None, stage: str, source: str) -> GateDecision | None:
        bound = self.bounds.get(name)
        if bound is None or name in self.flagged or not math.isfinite(value):
            return None
        crossed = out_of_bound(value, bound)
        if crossed is None:
            return None
        self.flagged.add(name)
        where = _step_text(step) if source == "telemetry" else "in the final result"
        return _decision(
            stage, "flag", f"{name} {fmt(value)} {where} is suspiciously good ({crossed}); re-evaluate before "
            "trusting it", monitor="suspicious", metric=name, step=step, value=value,
            reference=bound.below if crossed.startswith("below") else bound.above, source=source,
        )

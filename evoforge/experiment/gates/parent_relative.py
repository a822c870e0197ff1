"""Parent-relative pruner: stop a trial that trails its parent's curve at the same step by more than a margin.

Compared on running bests: the trial's best so far against the best the parent had reached at that step, with a
relative tolerance `margin` (|parent| x margin). No parent curve for the stage and metric: never fires.
"""

from __future__ import annotations

from evoforge.config import ParentRelativeConfig
from evoforge.experiment.gates._base import CurveState, MetricGate, RunningCurve, fmt
from evoforge.models import Direction, GateDecision, TelemetryPoint


class ParentRelativeGate(MetricGate):
    name = "parent_relative"
    config: ParentRelativeConfig

    def __init__(self, config: ParentRelativeConfig) -> None:
        super().__init__(config)
        self._parent: RunningCurve | None = None

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        if not self.applies(point, state) or self.best is None:
            return None
        cfg, step = self.config, point.step
        assert step is not None
        if self._parent is None:
            self._parent = RunningCurve(state.history.parent_curves.get(state.stage, {}).get(cfg.metric, ()),
                                        cfg.direction)
        parent = self._parent.at(step)
        if parent is None:
            return None
        slack = abs(parent) * cfg.margin
        bound = parent - slack if cfg.direction is Direction.MAXIMIZE else parent + slack
        if not self.worse(self.best, bound):
            return None
        return self.prune(
            point, state,
            f"{cfg.metric} best {fmt(self.best)} at step {step} trails the parent's {fmt(parent)} "
            f"by more than margin {cfg.margin:g} (bound {fmt(bound)}, {cfg.direction.value})",
            best=self.best, reference=parent, bound=bound, margin=cfg.margin,
        )

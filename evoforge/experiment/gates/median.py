"""Median pruner: stop a trial whose best value so far is worse than the median of past trials at the same step.

Like Optuna's MedianPruner (a PercentilePruner at 50), compared on running bests: each past curve that completed
this stage contributes the best value it had reached at or before the step, and the trial's best so far must be
at least as good as their `percentile` (50: the median; 25: the best quarter's boundary). Fires only after
`warmup_steps` and with `min_trials` such curves. NaN and infinite values are ignored (the anomaly monitor owns
them).
"""

from __future__ import annotations

from evoforge.config import MedianConfig
from evoforge.experiment.gates._base import CurveState, MetricGate, RunningCurve, fmt
from evoforge.models import Direction, GateDecision, TelemetryPoint


def percentile_of_best(values: list[float], percentile: float, direction: Direction) -> float:
    """The value that the best `percentile` % of `values` reach (linear interpolation; 50 gives the median)."""
    ranked = sorted(values, reverse=direction is Direction.MAXIMIZE)  # best first
    position = (len(ranked) - 1) * percentile / 100.0
    low = int(position)
    high = min(low + 1, len(ranked) - 1)
    return ranked[low] + (ranked[high] - ranked[low]) * (position - low)


class MedianGate(MetricGate):
    name = "median"
    config: MedianConfig

    def __init__(self, config: MedianConfig) -> None:
        super().__init__(config)
        self._curves: list[RunningCurve] | None = None

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        if not self.applies(point, state) or self.best is None:
            return None
        cfg, step = self.config, point.step
        assert step is not None
        if self._curves is None:
            recorded = state.history.curves.get(state.stage, {}).get(cfg.metric, [])
            self._curves = [RunningCurve(c, cfg.direction) for c in recorded]
        past = [v for c in self._curves if (v := c.at(step)) is not None]
        if len(past) < cfg.min_trials:
            return None
        reference = percentile_of_best(past, cfg.percentile, cfg.direction)
        if not self.worse(self.best, reference):
            return None
        what = "the median" if cfg.percentile == 50 else f"the best-{cfg.percentile:g}% mark"
        return self.prune(
            point, state,
            f"{cfg.metric} best {fmt(self.best)} at step {step} is worse than {what} {fmt(reference)} "
            f"of {len(past)} past trials ({cfg.direction.value})",
            best=self.best, reference=reference, trials=len(past), percentile=cfg.percentile,
        )

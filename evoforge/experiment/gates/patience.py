"""Patience (plateau) pruner: stop a trial whose best value has not improved by more than `min_delta` for
`patience` consecutive reports of the metric. Reports before `warmup_steps` set the best but do not count
toward patience; NaN and infinite values count as reports without improvement. A pruned trial keeps no score, so
set `patience` longer than a converged run's noisy tail (or restrict `stages`) lest it stop a good run near its end.
"""

from __future__ import annotations

import math

from evoforge.config import PatienceConfig
from evoforge.experiment.gates._base import CurveState, MetricGate, fmt
from evoforge.models import GateDecision, TelemetryPoint


class PatienceGate(MetricGate):
    name = "patience"
    config: PatienceConfig

    def __init__(self, config: PatienceConfig) -> None:
        super().__init__(config)
        self._anchor: float | None = None  # the best value that counted as an improvement
        self._anchor_step: int | None = None
        self._stale = 0

    def check(self, point: TelemetryPoint, state: CurveState) -> GateDecision | None:
        cfg = self.config
        if point.name != cfg.metric or point.step is None:
            return None
        if cfg.stages is not None and state.stage not in cfg.stages:
            return None
        sign = cfg.direction.sign()
        if math.isfinite(point.value) and (self._anchor is None or sign * (point.value - self._anchor) > cfg.min_delta):
            self._anchor, self._anchor_step, self._stale = point.value, point.step, 0
            return None
        if point.step < cfg.warmup_steps:
            return None
        self._stale += 1
        if self._anchor is None or self._stale < cfg.patience:
            return None
        return self.prune(
            point, state,
            f"{cfg.metric} has not improved on {fmt(self._anchor)} (step {self._anchor_step}) by more than "
            f"min_delta {cfg.min_delta:g} for {self._stale} reports (patience {cfg.patience})",
            reference=self._anchor, best_step=self._anchor_step, reports=self._stale,
        )

"""The Engineer's gates: static checks before a run, stage promotion between runs, and curve pruners and anomaly
monitors that watch telemetry while a stage runs (one small base, one module per rule)."""

from __future__ import annotations

from evoforge.config import GatesConfig
from evoforge.experiment.gates._base import CurveGate, CurveState, MetricGate, RunningCurve
from evoforge.experiment.gates.anomaly import NanMonitor, SlowdownMonitor, SuspiciousMonitor
from evoforge.experiment.gates.median import MedianGate
from evoforge.experiment.gates.parent_relative import ParentRelativeGate
from evoforge.experiment.gates.patience import PatienceGate
from evoforge.experiment.gates.stage import check_promotion
from evoforge.experiment.gates.static import check_static, program_fingerprint
from evoforge.models import EvaluationHistory

__all__ = [
    "CurveGate", "CurveState", "MedianGate", "MetricGate", "NanMonitor", "ParentRelativeGate",
    "PatienceGate", "RunningCurve", "SlowdownMonitor", "SuspiciousMonitor",
    "build_curve_gates", "check_promotion", "check_static", "program_fingerprint",
]


def build_curve_gates(config: GatesConfig, stage: str, history: EvaluationHistory,
                      suspicious: SuspiciousMonitor | None = None) -> list[CurveGate]:
    """Fresh gates that watch one stage of one trial, in the order they judge each point (anomalies first).

    `suspicious` is shared across the trial's stages so each metric is flagged once per trial.
    """
    gates: list[CurveGate] = []
    anomaly = config.anomaly
    if anomaly.nan:
        gates.append(NanMonitor())
    if anomaly.slowdown is not None:
        gates.append(SlowdownMonitor(anomaly.slowdown, stage, history))
    if config.median is not None:
        gates.append(MedianGate(config.median))
    if config.parent_relative is not None:
        gates.append(ParentRelativeGate(config.parent_relative))
    if config.patience is not None:
        gates.append(PatienceGate(config.patience))
    if suspicious is not None and suspicious.bounds:
        gates.append(suspicious)
    return gates

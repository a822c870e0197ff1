"""The record's evaluation detail: stage results, telemetry points and gate decisions of each trial (the
`EvaluationHistory` the gates compare a new trial with is built from them in history.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select

from evoforge.memory import statements as st
from evoforge.memory import tables as t
from evoforge.memory.tables import finite_or_none, utcnow
from evoforge.models import GateDecision, Outcome, StageResult, TelemetryPoint, TrialStatus


@dataclass(frozen=True)
class DecisionRow:
    """A recorded gate decision with its trial."""

    trial_id: int
    decision: GateDecision


def write_evaluation(conn: Connection, trial_id: int, outcome: Outcome) -> None:
    """Store an outcome's stage results, telemetry and gate decisions (inside the caller's transaction)."""
    if outcome.stages:
        st.INSERT_STAGE_RESULTS.run(conn, [
            dict(trial_id=trial_id, position=i, stage=s.name, status=s.status.value, score=finite_or_none(s.score),
                 metrics=dict(s.metrics), seconds=float(s.seconds), error_class=s.error_class,
                 error_message=s.error_message)
            for i, s in enumerate(outcome.stages)
        ])
    if outcome.telemetry:
        st.INSERT_TELEMETRY.run(conn, [
            dict(trial_id=trial_id, stage=p.stage, step=p.step, name=p.name, value=finite_or_none(p.value),
                 elapsed_s=float(p.t))
            for p in outcome.telemetry
        ])
    if outcome.decisions:
        now = utcnow()
        st.INSERT_GATE_DECISIONS.run(conn, [
            dict(trial_id=trial_id, stage=d.stage, gate=d.gate, action=d.action, reason=d.reason,
                 evidence=dict(d.evidence), created_at=now)
            for d in outcome.decisions
        ])


_STAGE_RESULTS = (select(t.stage_results).where(t.stage_results.c.trial_id == bindparam("trial_"))
                  .order_by(t.stage_results.c.position))


def stage_results(conn: Connection, trial_id: int) -> list[StageResult]:
    return [
        StageResult(name=r.stage, status=TrialStatus(r.status), score=r.score, metrics=dict(r.metrics or {}),
                    seconds=r.seconds, error_class=r.error_class, error_message=r.error_message)
        for r in conn.execute(_STAGE_RESULTS, {"trial_": trial_id}).all()
    ]


def telemetry(conn: Connection, trial_id: int) -> list[TelemetryPoint]:
    query = select(t.telemetry).where(t.telemetry.c.trial_id == trial_id).order_by(t.telemetry.c.id)
    return [
        TelemetryPoint(stage=r.stage, step=r.step, name=r.name, value=math.nan if r.value is None else r.value,
                       t=r.elapsed_s)
        for r in conn.execute(query).all()
    ]


def _in_run(trial_id: Any, run_id: int) -> Any:
    """`trial_id` (a column) names a trial of run `run_id`: a correlated EXISTS on the trials' primary key, so a query
    ordered by its own id with a LIMIT reads only as many rows as it returns (`trial_id IN (the run's ids)` listed
    every trial of the run and sorted all their rows, at each evaluation: its cost grew with the record)."""
    return exists().where(t.trials.c.id == trial_id, t.trials.c.run_id == run_id)


def decisions(conn: Connection, trial_id: int | None = None, run_id: int | None = None) -> list[DecisionRow]:
    query = select(t.gate_decisions).order_by(t.gate_decisions.c.id)
    if trial_id is not None:
        query = query.where(t.gate_decisions.c.trial_id == trial_id)
    elif run_id is not None:
        query = query.where(_in_run(t.gate_decisions.c.trial_id, run_id))
    return [
        DecisionRow(r.trial_id, GateDecision(gate=r.gate, stage=r.stage, action=r.action, reason=r.reason,
                                             evidence=dict(r.evidence or {})))
        for r in conn.execute(query).all()
    ]


def savings_by_gate(conn: Connection, run_id: int | None = None) -> dict[str, Any]:
    """Evaluation seconds spent in all, and seconds saved per gate that pruned or reused (run `run_id`'s trials
    when given)."""
    query = select(t.trials.c.status, t.trials.c.error_class, t.trials.c.seconds, t.trials.c.seconds_saved,
                   t.trials.c.reused_from)
    rows = conn.execute(query if run_id is None else query.where(t.trials.c.run_id == run_id)).all()
    saved: dict[str, float] = defaultdict(float)
    pruned: dict[str, int] = defaultdict(int)
    for status, error_class, _seconds, seconds_saved, reused_from in rows:
        if reused_from is not None:
            gate = "duplicate"
        elif status == TrialStatus.PRUNED.value:
            gate = (error_class or "pruned").removeprefix("pruned:")
        else:
            continue
        saved[gate] += float(seconds_saved or 0.0)
        pruned[gate] += 1
    return {
        "evaluation_seconds": round(sum(float(r[2] or 0.0) for r in rows), 3),
        "seconds_saved": round(sum(saved.values()), 3),
        "saved_by_gate": {gate: round(v, 3) for gate, v in sorted(saved.items())},
        "stopped_by_gate": dict(sorted(pruned.items())),
    }

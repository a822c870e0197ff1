"""The `EvaluationHistory` the gates compare a new trial with, kept by the record between trials: each build reads
only the stage results committed since the previous one (and the curves of the trials they belong to), not the
newest thousands again. Stage results and telemetry are written once, with the trial's outcome, and never change.

Reading "what is new" by id is exact where ids are handed out in commit order: on SQLite (one writer at a time, ids
never reused while no row is deleted). Elsewhere (PostgreSQL: a transaction may commit a lower id after a higher one
was read) every build reads everything again, as `evaluations.build_history` does.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable

from sqlalchemy import Connection, Select, bindparam, select

from evoforge.memory import tables as t
from evoforge.memory.evaluations import _in_run, stage_results
from evoforge.models import Curve, EvaluationHistory, TrialStatus

HISTORY_TRIALS = 200  # the newest completed trials whose curves the gates compare with
HISTORY_STAGE_RESULTS = 2000  # the newest completed stage results behind quantile rules (bounded cost per trial)
KEPT_PARENTS = 4096  # parents whose stage scores are kept (a finished trial's never change)
StageRow = tuple[int, str, float | None]  # trial id, stage, score
Curves = dict[str, dict[str, Curve]]  # stage → metric → curve


def _succeeded_stages(run_id: int | None) -> Select[tuple[int, int, str, float | None]]:
    """The run's succeeded stage results, newest first (`:after`: with an id above it)."""
    s = t.stage_results.c
    query = (select(s.id, s.trial_id, s.stage, s.score)
             .where(s.status == TrialStatus.SUCCEEDED.value, s.id > bindparam("after")))
    return query if run_id is None else query.where(_in_run(s.trial_id, run_id))


def curves_of(conn: Connection, trial_ids: list[int]) -> dict[int, dict[str, dict[str, Curve]]]:
    """trial id → stage → metric → curve (points ordered by step)."""
    if not trial_ids:
        return {}
    points: dict[int, dict[str, dict[str, list[tuple[int, float, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    query = (
        select(t.telemetry.c.trial_id, t.telemetry.c.stage, t.telemetry.c.name, t.telemetry.c.step,
               t.telemetry.c.value, t.telemetry.c.elapsed_s)
        .where(t.telemetry.c.trial_id.in_(trial_ids), t.telemetry.c.step.is_not(None), t.telemetry.c.value.is_not(None))
        .order_by(t.telemetry.c.id)
    )
    for trial_id, stage, name, step, value, at in conn.execute(query).all():
        points[trial_id][stage][name].append((int(step), float(value), float(at)))
    return {
        tid: {stage: {name: tuple(sorted(c)) for name, c in metrics.items()} for stage, metrics in stages.items()}
        for tid, stages in points.items()
    }


def _full_seconds(conn: Connection, run_id: int | None) -> list[float]:
    full = (
        select(t.trials.c.seconds)
        .where(t.trials.c.status == TrialStatus.SUCCEEDED.value, t.trials.c.reused_from.is_(None))
        .order_by(t.trials.c.id.desc())
        .limit(HISTORY_TRIALS)
    )
    if run_id is not None:
        full = full.where(t.trials.c.run_id == run_id)
    return [float(s) for s in conn.execute(full).scalars()]


def _assemble(rows: Iterable[StageRow], parent_id: int | None, curves: dict[int, Curves],
              parent_scores: dict[str, float], full_seconds: list[float]) -> EvaluationHistory:
    """The history from the newest stage rows (oldest first), the curves of their newest trials (and the
    parent's), the parent's stage scores and the full evaluations' seconds."""
    stage_scores: dict[str, list[float]] = defaultdict(list)
    completed: dict[int, set[str]] = defaultdict(set)
    for trial_id, stage, score in rows:
        completed[trial_id].add(stage)
        if score is not None:
            stage_scores[stage].append(float(score))
    compared: dict[str, dict[str, list[Curve]]] = defaultdict(lambda: defaultdict(list))
    for trial_id in recent_trials(completed):
        for stage, metrics in curves.get(trial_id, {}).items():
            if stage in completed[trial_id]:
                for name, curve in metrics.items():
                    compared[stage][name].append(curve)
    return EvaluationHistory(
        stage_scores={k: list(v) for k, v in stage_scores.items()},
        parent_stage_scores=parent_scores,
        curves={stage: dict(metrics) for stage, metrics in compared.items()},
        parent_curves=curves.get(parent_id, {}) if parent_id is not None else {},
        full_seconds=full_seconds,
    )


def recent_trials(completed: Iterable[int]) -> list[int]:
    """The newest trials (by id) that completed a stage: those whose curves the gates compare with."""
    return sorted(completed)[-HISTORY_TRIALS:]


def _parent_scores(conn: Connection, parent_id: int) -> tuple[dict[str, float], bool]:
    """The parent's succeeded stage scores, and whether it has stage results at all (then they never change)."""
    results = stage_results(conn, parent_id)
    scores = {r.name: r.score for r in results if r.status is TrialStatus.SUCCEEDED and r.score is not None}
    return scores, bool(results)  # type: ignore[return-value]  # scores are not None here


def build_history(conn: Connection, parent_id: int | None, run_id: int | None = None) -> EvaluationHistory:
    """What the gates compare with, read in full: stage scores and curves of completed stages, the parent's,
    full-run costs (of run `run_id`'s trials when given)."""
    query = _succeeded_stages(run_id).order_by(t.stage_results.c.id.desc()).limit(HISTORY_STAGE_RESULTS)
    rows = [(trial_id, stage, score) for _id, trial_id, stage, score in conn.execute(query, {"after": 0}).all()][::-1]
    recent = recent_trials({trial_id for trial_id, _, _ in rows})
    ids = recent + ([parent_id] if parent_id is not None and parent_id not in recent else [])
    parent_scores = _parent_scores(conn, parent_id)[0] if parent_id is not None else {}
    return _assemble(rows, parent_id, curves_of(conn, ids), parent_scores, _full_seconds(conn, run_id))


class KeptHistory:
    """One run's history between builds (see the module's docstring); `incremental=False` reads it all each time."""

    def __init__(self, run_id: int | None, *, incremental: bool) -> None:
        self.run_id, self.incremental = run_id, incremental
        self._rows: deque[StageRow] = deque(maxlen=HISTORY_STAGE_RESULTS)
        self._last_id = 0  # the newest stage result read
        self._curves: dict[int, Curves] = {}  # of trials with stage results (complete: written with them)
        self._parents: dict[int, dict[str, float]] = {}  # parent id → stage scores, of parents with stage results
        self._lock = threading.Lock()

    def build(self, conn: Connection, parent_id: int | None) -> EvaluationHistory:
        if not self.incremental:
            return build_history(conn, parent_id, self.run_id)
        with self._lock:
            return self._build(conn, parent_id)

    def _build(self, conn: Connection, parent_id: int | None) -> EvaluationHistory:
        query = _succeeded_stages(self.run_id).order_by(t.stage_results.c.id)
        if not self._last_id:  # the first build: only the newest rows are needed
            query = (_succeeded_stages(self.run_id).order_by(t.stage_results.c.id.desc())
                     .limit(HISTORY_STAGE_RESULTS))
        new = conn.execute(query, {"after": self._last_id}).all()
        for row_id, trial_id, stage, score in sorted(new):
            self._rows.append((trial_id, stage, score))
            self._last_id = max(self._last_id, row_id)
        with_stages = {trial_id for trial_id, _, _ in self._rows}
        recent = recent_trials(with_stages)
        ids = recent + ([parent_id] if parent_id is not None and parent_id not in recent else [])
        missing = [i for i in ids if i not in self._curves]
        read = curves_of(conn, missing)
        wanted = set(ids)
        self._curves = {i: c for i, c in self._curves.items() if i in wanted}
        self._curves.update({i: read.get(i, {}) for i in missing if i in with_stages})
        known = {**self._curves, **{i: read[i] for i in missing if i not in with_stages and i in read}}
        return _assemble(self._rows, parent_id, known, self._parent_scores(conn, parent_id),
                         _full_seconds(conn, self.run_id))

    def _parent_scores(self, conn: Connection, parent_id: int | None) -> dict[str, float]:
        if parent_id is None:
            return {}
        kept = self._parents.get(parent_id)
        if kept is not None:
            return dict(kept)
        scores, final = _parent_scores(conn, parent_id)
        if final:
            self._parents[parent_id] = scores
            if len(self._parents) > KEPT_PARENTS:
                self._parents.pop(next(iter(self._parents)))
        return dict(scores)

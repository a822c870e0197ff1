"""The `EvaluationHistory` the gates compare a new trial with, kept by the record between trials: each build reads
only the stage results committed since the previous one (and the curves of the trials they belong to), not the
newest thousands again. Stage results and telemetry are written once, with the trial's outcome, and never change.

What the record wrote itself is not read back: a trial's stage results and telemetry are written once, with its
outcome, so the curves and stage scores of an outcome this record committed are taken from it (`wrote`), not from
a SELECT at the next build.

Reading "what is new" by id is exact where ids are handed out in commit order: on SQLite (one writer at a time, ids
never reused while no row is deleted). Elsewhere (PostgreSQL: a transaction may commit a lower id after a higher one
was read) every build reads everything again, as `evaluations.build_history` does.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Select, bindparam, literal, null, or_, select, union_all

from evoforge.memory import tables as t
from evoforge.memory.evaluations import _in_run, stage_results
from evoforge.memory.tables import finite_or_none
from evoforge.models import Curve, EvaluationHistory, Outcome, StageResult, TrialStatus

HISTORY_TRIALS = 200  # the newest completed trials whose curves the gates compare with
HISTORY_STAGE_RESULTS = 2000  # the newest completed stage results behind quantile rules (bounded cost per trial)
KEPT_PARENTS = 4096  # parents whose stage scores are kept (a finished trial's never change)
OPEN_SPAN = 64  # an unfinished trial this many ids behind the newest is read by its id, not with those between
TOLD_CURVES = 2 * HISTORY_TRIALS  # curves of the newest outcomes the record wrote, kept until a build takes them
StageRow = tuple[int, str, float | None]  # trial id, stage, score
Curves = dict[str, dict[str, Curve]]  # stage → metric → curve


def _succeeded_stages(run_id: int | None) -> Select[tuple[int, int, str, float | None]]:
    """The run's succeeded stage results, newest first (`:after`: with an id above it)."""
    s = t.stage_results.c
    query = (select(s.id, s.trial_id, s.stage, s.score)
             .where(s.status == TrialStatus.SUCCEEDED.value, s.id > bindparam("after")))
    return query if run_id is None else query.where(_in_run(s.trial_id, run_id))


_CURVE_POINTS = (  # parameter: trials_ (a list of trial ids)
    select(t.telemetry.c.trial_id, t.telemetry.c.stage, t.telemetry.c.name, t.telemetry.c.step,
           t.telemetry.c.value, t.telemetry.c.elapsed_s)
    .where(t.telemetry.c.trial_id.in_(bindparam("trials_", expanding=True)), t.telemetry.c.step.is_not(None),
           t.telemetry.c.value.is_not(None))
    .order_by(t.telemetry.c.id)
)


def curves_of(conn: Connection, trial_ids: list[int]) -> dict[int, dict[str, dict[str, Curve]]]:
    """trial id → stage → metric → curve (points ordered by step)."""
    if not trial_ids:
        return {}
    points: dict[int, dict[str, dict[str, list[tuple[int, float, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for trial_id, stage, name, step, value, at in conn.execute(_CURVE_POINTS, {"trials_": trial_ids}).all():
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


def _tally(rows: Iterable[StageRow]) -> tuple[dict[str, list[float]], dict[int, Counter[str]]]:
    """Stage rows (oldest first) as the scores per stage and the stages each trial completed."""
    scores: dict[str, list[float]] = defaultdict(list)
    completed: dict[int, Counter[str]] = defaultdict(Counter)
    for trial_id, stage, score in rows:
        completed[trial_id][stage] += 1
        if score is not None:
            scores[stage].append(float(score))
    return scores, completed


def _assemble(scores: Mapping[str, Iterable[float]], completed: Mapping[int, Counter[str]], recent: list[int],
              parent_id: int | None, curves: dict[int, Curves], parent_scores: dict[str, float],
              full_seconds: list[float]) -> EvaluationHistory:
    """The history from the scores per stage and the stages completed per trial (of the newest stage results),
    the curves of the newest of those trials (and the parent's), the parent's stage scores and the full
    evaluations' seconds."""
    compared: dict[str, dict[str, list[Curve]]] = defaultdict(lambda: defaultdict(list))
    for trial_id in recent:  # recent_trials(completed)
        for stage, metrics in curves.get(trial_id, {}).items():
            if stage in completed[trial_id]:
                for name, curve in metrics.items():
                    compared[stage][name].append(curve)
    return EvaluationHistory(
        stage_scores={k: list(v) for k, v in scores.items()},
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
    return _succeeded_scores(results), bool(results)


def _succeeded_scores(results: Iterable[StageResult]) -> dict[str, float]:
    """Stage name → score of the succeeded stage results with a (finite) score, in order (a later one wins)."""
    scores = ((r.name, finite_or_none(r.score)) for r in results if r.status is TrialStatus.SUCCEEDED)
    return {name: score for name, score in scores if score is not None}


def outcome_curves(outcome: Outcome) -> Curves:
    """Stage → metric → curve of an outcome's telemetry, as `curves_of` reads them back once it is recorded (points
    with a step and a finite value, by step)."""
    points: dict[str, dict[str, list[tuple[int, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for p in outcome.telemetry:
        value = finite_or_none(p.value)  # as stored
        if p.step is not None and value is not None:
            points[p.stage][p.name].append((int(p.step), value, float(p.t)))
    return {stage: {name: tuple(sorted(c)) for name, c in metrics.items()} for stage, metrics in points.items()}


def build_history(conn: Connection, parent_id: int | None, run_id: int | None = None) -> EvaluationHistory:
    """What the gates compare with, read in full: stage scores and curves of completed stages, the parent's,
    full-run costs (of run `run_id`'s trials when given)."""
    query = _succeeded_stages(run_id).order_by(t.stage_results.c.id.desc()).limit(HISTORY_STAGE_RESULTS)
    rows = [(trial_id, stage, score) for _id, trial_id, stage, score in conn.execute(query, {"after": 0}).all()][::-1]
    scores, completed = _tally(rows)
    recent = recent_trials(completed)
    ids = recent + ([parent_id] if parent_id is not None and parent_id not in recent else [])
    parent_scores = _parent_scores(conn, parent_id)[0] if parent_id is not None else {}
    return _assemble(scores, completed, recent, parent_id, curves_of(conn, ids), parent_scores,
                     _full_seconds(conn, run_id))


class KeptHistory:
    """One run's history between builds (see the module's docstring); `incremental=False` reads it all each time."""

    def __init__(self, run_id: int, *, incremental: bool) -> None:
        self.run_id, self.incremental = run_id, incremental
        self._rows: deque[StageRow] = deque()  # the newest succeeded stage results, oldest first
        self._last_id = 0  # the newest stage result read
        self._scores: dict[str, deque[float]] = {}  # of `_rows`, per stage, oldest first
        self._completed: dict[int, Counter[str]] = {}  # of `_rows`: trial id → its stages
        self._completed_ids: list[int] = []  # its keys, ascending (kept so, not sorted again at each build)
        self._curves: dict[int, Curves] = {}  # of trials with stage results (complete: written with them)
        self._parents: dict[int, dict[str, float]] = {}  # parent id → stage scores, of parents with stage results
        self._newest_trial = 0  # the newest trial read
        self._open: set[int] = set()  # trials up to it that were unfinished when read: their status may change
        self._seconds: dict[int, float] = {}  # trial id → seconds, of the newest succeeded, originally evaluated
        self._seconds_ids: list[int] = []  # its keys, ascending
        self._told: dict[int, Curves] = {}  # trial id → curves of an outcome the record committed (`wrote`)
        self._lock = threading.Lock()
        stages = _succeeded_stages(run_id)
        self._first_stages = stages.order_by(t.stage_results.c.id.desc()).limit(HISTORY_STAGE_RESULTS)
        self._new_stages = stages.order_by(t.stage_results.c.id)
        c = t.trials.c
        columns = select(c.id, c.status, c.seconds, c.reused_from).where(c.run_id == run_id)
        self._new_trials = columns.where(or_(c.id > bindparam("newest_"),  # parameters: newest_, open_
                                             c.id.in_(bindparam("open_", expanding=True))))
        self._trials_from = columns.where(c.id >= bindparam("lowest_"))  # no SQL rewritten at each execution
        s = t.stage_results.c
        self._both = union_all(  # at each build after the first: the new stage results and trials in one statement
            self._new_stages.with_only_columns(literal(0).label("kind"), s.id, s.trial_id, s.stage, s.score,
                                               null().label("reused_from")).order_by(None),
            self._trials_from.with_only_columns(literal(1), c.id, null(), c.status, c.seconds, c.reused_from))

    def wrote(self, trial_id: int, outcome: Outcome) -> None:
        """The record committed this outcome of trial `trial_id` (of this run): its curves and stage scores are
        known without reading them back (stage results and telemetry are written once, with the outcome)."""
        if not self.incremental:
            return
        with self._lock:
            self._told[trial_id] = outcome_curves(outcome)
            if len(self._told) > TOLD_CURVES:
                self._told.pop(next(iter(self._told)))
            # final even with no stage results: a finished trial gets none later (only its outcome writes them)
            self._keep_parent(trial_id, _succeeded_scores(outcome.stages))

    def build(self, conn: Connection, parent_id: int | None) -> EvaluationHistory:
        if not self.incremental:
            return build_history(conn, parent_id, self.run_id)
        with self._lock:
            return self._build(conn, parent_id)

    def _build(self, conn: Connection, parent_id: int | None) -> EvaluationHistory:
        lowest = min(self._open, default=self._newest_trial + 1)  # the trials from the oldest one in flight
        if self._last_id and self._newest_trial - lowest < OPEN_SPAN:
            both = conn.execute(self._both, {"after": self._last_id, "lowest_": lowest}).all()
            self._add_stage_results([row[1:5] for row in both if row[0] == 0])
            self._add_trials([(row[1], *row[3:6]) for row in both if row[0] == 1
                              and (row[1] > self._newest_trial or row[1] in self._open)])
        else:
            self._read_stage_results(conn)
            self._read_trials(conn)
        completed = self._completed
        recent = self._completed_ids[-HISTORY_TRIALS:]  # = recent_trials(completed)
        ids = recent + ([parent_id] if parent_id is not None and parent_id not in recent else [])
        missing = [i for i in ids if i not in self._curves]
        known = self._curves
        if missing:
            read = {i: self._told[i] for i in missing if i in self._told}
            read.update(curves_of(conn, [i for i in missing if i not in read]))
            self._curves.update({i: read.get(i, {}) for i in missing if i in completed})
            unkept = {i: read[i] for i in missing if i not in completed and i in read}
            known = {**self._curves, **unkept} if unkept else self._curves
        if len(self._curves) > 2 * (HISTORY_TRIALS + 1):  # now and then, not at every build: a finished trial's
            wanted = set(ids)  # curves never change, so those kept past the window are still right meanwhile
            self._curves = {i: c for i, c in self._curves.items() if i in wanted}  # `known` stays whole
        return _assemble(self._scores, completed, recent, parent_id, known, self._parent_scores(conn, parent_id),
                         self._full_seconds())

    def _read_stage_results(self, conn: Connection) -> None:
        """Add the stage results committed since the last build (at the first, the newest ones)."""
        query = self._new_stages if self._last_id else self._first_stages
        self._add_stage_results(conn.execute(query, {"after": self._last_id}).all())

    def _add_stage_results(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add these stage results (id, trial id, stage, score) and let the oldest go past HISTORY_STAGE_RESULTS."""
        for row_id, trial_id, stage, score in sorted(tuple(row) for row in rows):
            self._last_id = max(self._last_id, row_id)
            self._rows.append((trial_id, stage, score))
            if trial_id not in self._completed:
                self._completed[trial_id] = Counter()
                if not self._completed_ids or trial_id > self._completed_ids[-1]:
                    self._completed_ids.append(trial_id)
                else:
                    bisect.insort(self._completed_ids, trial_id)
            self._completed[trial_id][stage] += 1
            if score is not None:
                self._scores.setdefault(stage, deque()).append(float(score))
        while len(self._rows) > HISTORY_STAGE_RESULTS:
            trial_id, stage, score = self._rows.popleft()
            stages = self._completed[trial_id]
            stages[stage] -= 1
            if not stages[stage]:
                del stages[stage]
                if not stages:
                    del self._completed[trial_id]
                    del self._completed_ids[bisect.bisect_left(self._completed_ids, trial_id)]
            if score is not None:
                scores = self._scores[stage]
                scores.popleft()  # the stage's oldest score: rows and scores keep one order
                if not scores:
                    del self._scores[stage]

    def _read_trials(self, conn: Connection) -> None:
        """Read the trials added since the last build and those that were unfinished then (a finished trial never
        changes)."""
        lowest = min(self._open, default=self._newest_trial + 1)
        if self._newest_trial - lowest < OPEN_SPAN:  # the trials from the oldest one unfinished (those in flight)
            rows = [r for r in conn.execute(self._trials_from, {"lowest_": lowest}).all()
                    if r[0] > self._newest_trial or r[0] in self._open]
        else:  # one left unfinished long ago (another runner's, held for long): it and the new ones
            rows = conn.execute(self._new_trials, {"newest_": self._newest_trial, "open_": sorted(self._open)}).all()
        self._add_trials(rows)

    def _add_trials(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take in these trials (id, status, seconds, reused from), new or unfinished at the last build."""
        for trial_id, status, seconds, reused_from in rows:
            self._newest_trial = max(self._newest_trial, trial_id)
            if not TrialStatus(status).finished:
                self._open.add(trial_id)
                continue
            self._open.discard(trial_id)
            if status == TrialStatus.SUCCEEDED.value and reused_from is None:
                if trial_id not in self._seconds:
                    if not self._seconds_ids or trial_id > self._seconds_ids[-1]:
                        self._seconds_ids.append(trial_id)
                    else:
                        bisect.insort(self._seconds_ids, trial_id)
                self._seconds[trial_id] = float(seconds)

    def _full_seconds(self) -> list[float]:
        """Seconds of the run's newest HISTORY_TRIALS succeeded, originally evaluated trials, newest first."""
        if len(self._seconds_ids) > 2 * HISTORY_TRIALS:
            del self._seconds_ids[:-HISTORY_TRIALS]
            self._seconds = {i: self._seconds[i] for i in self._seconds_ids}
        return [self._seconds[i] for i in reversed(self._seconds_ids[-HISTORY_TRIALS:])]

    def _parent_scores(self, conn: Connection, parent_id: int | None) -> dict[str, float]:
        if parent_id is None:
            return {}
        kept = self._parents.get(parent_id)
        if kept is not None:
            return dict(kept)
        scores, final = _parent_scores(conn, parent_id)
        if final:
            self._keep_parent(parent_id, scores)
        return dict(scores)

    def _keep_parent(self, trial_id: int, scores: dict[str, float]) -> None:
        self._parents[trial_id] = scores
        if len(self._parents) > KEPT_PARENTS:
            self._parents.pop(next(iter(self._parents)))

"""The runs a record holds: one database may hold many runs of many tasks (a PostgreSQL record shared by a team),
each with its own trials; a `Record` works on one of them (the run its run folder names, or the one it created).
Mixed into `Record`; `list_runs` is what `evoforge runs --record URL` shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from evoforge.errors import RunError
from evoforge.memory import tables as t
from evoforge.memory.tables import RunInfo, utcnow
from evoforge.models import Direction, TrialStatus

_OPEN_VALUES = [TrialStatus.PROPOSED.value, TrialStatus.RUNNING.value]


class RunRows:
    """Creating and reading the record's runs; `Record` provides the engine."""

    _engine: Engine
    _shown: str
    _run_id: int | None
    _trial_columns: list[Any]

    @property
    def run_id(self) -> int:
        """The id of the run this record object reads and writes."""
        return self._require_run_id()

    @property
    def _read_scope(self) -> int:
        """The run reads are scoped to: this object's run, or 0 (no run has it) while the record holds none, so
        reads of an empty record find nothing instead of failing."""
        if self._run_id is None:
            with self._engine.connect() as conn:
                first = conn.execute(select(func.min(t.runs.c.id))).scalar()
            if first is None:
                return 0
            self._run_id = int(first)
        return self._run_id

    def create_run(
        self, *, task_name: str, config: dict[str, Any], seed: int, task_snapshot: dict[str, str],
        stopping: dict[str, Any],
    ) -> int:
        """Add a run to the record (a database may hold many); this object works on it from now on."""
        with self._engine.begin() as conn:
            result = conn.execute(
                insert(t.runs).values(
                    task_name=task_name, config=config, seed=seed, task_snapshot=task_snapshot,
                    stopping=stopping, created_at=utcnow(), trial_count=0,
                )
            )
            self._run_id = int(result.inserted_primary_key[0])
        return self._run_id

    def run_info(self) -> RunInfo:
        """The run this object works on: the one given (run folder, `--join`), else the record's first."""
        query = select(*(c for c in t.runs.c if c.name != "trial_count"))  # a version-3 record read-only: none
        query = query.where(t.runs.c.id == self._run_id) if self._run_id is not None else \
            query.order_by(t.runs.c.id).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            if self._run_id is not None:
                raise RunError(f"the record at {self._shown} holds no run {self._run_id}; "
                               f"`evoforge runs --record URL` lists its runs")
            raise RunError(f"the record at {self._shown} holds no run yet; start one with `evoforge run`")
        self._run_id = int(row.id)
        return RunInfo(
            id=row.id, task_name=row.task_name, config=dict(row.config), seed=row.seed,
            task_snapshot=dict(row.task_snapshot), stopping=dict(row.stopping), created_at=row.created_at,
        )

    def update_stopping(self, stopping: dict[str, Any]) -> None:
        run_id = self._require_run_id()
        with self._engine.begin() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(stopping=stopping))

    def _require_run_id(self) -> int:
        if self._run_id is None:
            self._run_id = self.run_info().id
        return self._run_id

    def list_runs(self) -> list[RunRow]:
        """Every run in the database, oldest first, with its trials by status and its best score."""
        with self._engine.connect() as conn:
            runs = conn.execute(select(t.runs.c.id, t.runs.c.task_name, t.runs.c.created_at, t.runs.c.config,
                                       t.runs.c.stopping).order_by(t.runs.c.id)).all()
            counts = _counts(conn)
            live = set() if "lease_until" not in {c.name for c in self._trial_columns} else set(conn.execute(
                select(t.trials.c.run_id).where(t.trials.c.status.in_(_OPEN_VALUES),
                                                t.trials.c.lease_until >= utcnow()).distinct()).scalars())
            rows = []
            for run in runs:
                direction = Direction(dict(run.config or {}).get("task_config", {}).get("objective", {})
                                      .get("direction", Direction.MAXIMIZE.value))
                rows.append(RunRow(
                    id=run.id, task_name=run.task_name, created_at=run.created_at, counts=counts.get(run.id, {}),
                    best_score=_best_score(conn, run.id, direction), live=run.id in live,
                    trials=dict(run.stopping or {}).get("trials"),
                ))
        return rows


@dataclass(frozen=True)
class RunRow:
    """One run of a database, as `evoforge runs --record URL` lists it."""

    id: int
    task_name: str
    created_at: datetime
    counts: dict[str, int]
    best_score: float | None
    live: bool  # a runner holds one of its trials now (its lease runs)
    trials: int | None  # the run's stopping rule: this many trials

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def state(self) -> str:
        """live (a runner works on it), finished (it holds its trials, none open) or stopped."""
        if self.live:
            return "live"
        done = not any(self.counts.get(s, 0) for s in _OPEN_VALUES)
        return "finished" if done and self.trials is not None and self.total >= self.trials else "stopped"


def _counts(conn: Connection) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {}
    query = select(t.trials.c.run_id, t.trials.c.status, func.count()).group_by(t.trials.c.run_id, t.trials.c.status)
    for run_id, status, n in conn.execute(query).all():
        found.setdefault(int(run_id), {})[status] = int(n)
    return found


def _best_score(conn: Connection, run_id: int, direction: Direction) -> float | None:
    score = t.trials.c.score
    best = func.max(score) if direction is Direction.MAXIMIZE else func.min(score)
    query = select(best).where(t.trials.c.run_id == run_id, t.trials.c.status == TrialStatus.SUCCEEDED.value,
                               score.is_not(None), t.trials.c.suspect.is_(False), t.trials.c.reused_from.is_(None))
    value = conn.execute(query).scalar()
    return None if value is None else float(value)

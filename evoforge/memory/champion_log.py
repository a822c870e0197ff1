"""The champion's record: every extra evaluation a challenger got (seed, status, score) and every decision on who
holds the title (mean ± standard error, evaluations, crowned or not, why). Mixed into `Record`; the tables are
created with the record's (an older record gets them when a run opens it)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    exists,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError, ProgrammingError

from evoforge.memory.tables import UTCDateTime, finite_or_none, metadata, trials, utcnow

champion_evaluations = Table(
    "champion_evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("seconds", Float, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_champion_evaluations_trial_id", "trial_id"),
)

champion_decisions = Table(
    "champion_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("mean", Float, nullable=True),
    Column("stderr", Float, nullable=True),
    Column("evaluations", Integer, nullable=False),
    Column("crowned", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class ChampionDecision:
    """Who challenged, with what mean ± stderr over how many evaluations, and whether it took the title."""

    trial_id: int
    mean: float | None
    stderr: float | None
    evaluations: int
    crowned: bool
    reason: str
    created_at: datetime | None = None


_INSERT_EVALUATION = insert(champion_evaluations)  # built once (memory/statements.py says why)
_INSERT_DECISION = insert(champion_decisions)


class ChampionLog:
    """The champion's evaluations and decisions; `Record` provides the engine and `_writing` (transactions.py: the
    open batch of this thread, so a write inside `Record.io` joins its transaction)."""

    _engine: Engine
    _read_scope: int
    _writing: Callable[[], AbstractContextManager[Connection]]

    def add_champion_evaluation(self, trial_id: int, seed: int, status: str, score: float | None, seconds: float,
                                error: str | None = None) -> None:
        with self._writing() as conn:
            conn.execute(_INSERT_EVALUATION, dict(
                trial_id=trial_id, seed=seed, status=status, score=finite_or_none(score), seconds=float(seconds),
                error=error, created_at=utcnow()))

    def add_champion_decision(self, decision: ChampionDecision) -> None:
        with self._writing() as conn:
            conn.execute(_INSERT_DECISION, dict(
                trial_id=decision.trial_id, mean=finite_or_none(decision.mean),
                stderr=finite_or_none(decision.stderr), evaluations=decision.evaluations, crowned=decision.crowned,
                reason=decision.reason, created_at=utcnow()))

    def champion_decisions(self) -> list[ChampionDecision]:
        """Every decision of the run, oldest first (none for a record made before champions were kept)."""
        in_run = exists().where(trials.c.id == champion_decisions.c.trial_id, trials.c.run_id == self._read_scope)
        query = select(champion_decisions).where(in_run).order_by(champion_decisions.c.id)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except (OperationalError, ProgrammingError):  # an older record opened read-only: no such table
            return []
        return [ChampionDecision(r.trial_id, r.mean, r.stderr, r.evaluations, r.crowned, r.reason, r.created_at)
                for r in rows]

    def champion(self) -> ChampionDecision | None:
        """The current champion: the last trial crowned, or None."""
        crowned = [d for d in self.champion_decisions() if d.crowned]
        return crowned[-1] if crowned else None

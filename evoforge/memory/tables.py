"""The Database of Record's schema (runs, trials, LLM calls, analyses as portable Core tables) and row types.

Only portable types are used (Text, Float, Integer, JSON, timezone-aware DateTime) so the same schema serves
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from evoforge.models import LLMCall


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the record; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData()

# The record's schema version: 1 the first tables, 2 the trials' facts column, 3 the champion tables, 4 many runs in
# one database (run_state per run, run_id on agendas and LLM calls, the runs' trial count, the trials' runner and
# lease). Opening a record adds what an older one lacks (schema.create_missing_tables, add_missing_columns, then
# upgrades.upgrade_to_4 fills the new columns) and stamps it; a record stamped with a newer version than this is
# refused (schema.RecordTooNew) instead of being misread.
SCHEMA_VERSION = 4

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_name", Text, nullable=False),
    Column("config", JSON, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("task_snapshot", JSON, nullable=False),
    Column("stopping", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # How many trials the run holds: the shared trial budget is claimed by raising it (memory/claims.py), one
    # guarded UPDATE, so runners on several machines together add exactly the run's number of trials.
    Column("trial_count", Integer, nullable=True),
)

trials = Table(
    "trials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("parent_ids", JSON, nullable=False),
    Column("inspiration_ids", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("motivation", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("score", Float, nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("error_class", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("seconds", Float, nullable=False),
    Column("seconds_saved", Float, nullable=False),
    Column("proposer", Text, nullable=False),
    Column("model", Text, nullable=True),
    Column("digest", Text, nullable=False),
    Column("fingerprint", String(64), nullable=True),
    Column("suspect", Boolean, nullable=False, default=False),
    Column("reused_from", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    # What the sampler and the proposer decided for the trial (island, grid cell, model arm, temperature, patch
    # type, why): the facts samplers and the bandit are rebuilt from. Nullable: records made before it have none.
    Column("facts", JSON, nullable=True),
    # Which runner holds an unfinished trial, until when (renewed by its heartbeat); past it, another runner may
    # claim the trial (memory/claims.py). Null: no runner holds it (a record from before runners were kept).
    Column("runner", String(128), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Index("ix_trials_status", "status"),
    Index("ix_trials_run_id", "run_id"),
    Index("ix_trials_fingerprint", "fingerprint"),
)

stage_results = Table(
    "stage_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("stage", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("error_class", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Index("ix_stage_results_trial_id", "trial_id"),
    Index("ix_stage_results_stage", "stage", "status"),
)

telemetry = Table(
    "telemetry",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("stage", Text, nullable=False),
    Column("step", Integer, nullable=True),
    Column("name", Text, nullable=False),
    Column("value", Float, nullable=True),  # NaN/inf are stored as NULL (the gate decision keeps the evidence)
    Column("elapsed_s", Float, nullable=False),  # seconds since the stage started
    Index("ix_telemetry_trial_id", "trial_id"),
)

gate_decisions = Table(
    "gate_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("stage", Text, nullable=True),
    Column("gate", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_gate_decisions_trial_id", "trial_id"),
)

knowledge_shown = Table(
    "knowledge_shown",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("item_id", Integer, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("score", Float, nullable=True),
    Index("ix_knowledge_shown_trial_id", "trial_id"),
)

run_state = Table(  # a run's component state (wall seconds, why it stopped, the evaluator's seal); version 3's
    "run_state",     # global `loop_state` is copied here by upgrades.upgrade_to_4
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

agendas = Table(
    "agendas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=True),  # null only in a version-3 record opened read-only (one run)
    Column("after_trial", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=True),
    Column("run_id", Integer, nullable=True),  # null only in a version-3 record opened read-only (one run)
    Column("role", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("temperature", Float, nullable=True),
    Column("retries", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_llm_calls_trial_id", "trial_id"),
)

analyses = Table(
    "analyses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trial_id", Integer, ForeignKey("trials.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_analyses_trial_id", "trial_id"),
)


@dataclass(frozen=True)
class RunInfo:
    """The run a record holds: what was run, with which settings and seed, and when it stops."""

    id: int
    task_name: str
    config: dict[str, Any]
    seed: int
    task_snapshot: dict[str, str]
    stopping: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class LLMCallRow(LLMCall):
    """One recorded LLM call: the call itself (every LLMCall field) plus its row id, trial and time."""

    id: int
    trial_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class AnalysisRow:
    """One recorded analysis of a trial (the digest's data, a lesson, a note)."""

    id: int
    trial_id: int
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


def finite_or_none(value: float | None) -> float | None:
    """The score guard: only finite numbers are ever stored as scores."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """Make a value strict JSON: non-finite floats become None, tuples lists, numpy scalars Python ones."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int):
        return value
    if hasattr(value, "item"):  # numpy scalar
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def dumps_json(value: Any) -> str:
    """Strict JSON. Plain JSON-ready values (most of them, e.g. a trial's facts) take the
    C encoder directly; anything it refuses (NaN, sets, numpy integers) is converted by `_jsonable` first."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(value), allow_nan=False)

"""The dashboard's own read queries on the record's tables: trial summaries without their code or diff (2,000
trials stay a small answer), the run's direction, and best-so-far curves."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import JSON, column, func, inspect, select, table

from evoforge.memory import tables as t
from evoforge.memory.record import Record
from evoforge.models import Direction, TrialStatus
from evoforge.views import run_direction

SUMMARY_COLUMNS = ("id", "status", "score", "parent_ids", "name", "seconds", "seconds_saved", "suspect",
                   "reused_from", "error_class", "created_at", "finished_at")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def trial_summaries(record: Record, since: int = 0) -> list[dict[str, Any]]:
    """Every trial with id > `since`, oldest first, as small dicts (no code, diff or motivation)."""
    columns = [t.trials.c[name] for name in SUMMARY_COLUMNS]
    query = select(*columns).where(t.trials.c.run_id == record.run_id, t.trials.c.id > since).order_by(t.trials.c.id)
    with record._engine.connect() as conn:  # read through the record's own engine
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        score = row.score if row.score is not None and math.isfinite(row.score) else None
        out.append({
            "id": row.id, "status": row.status, "score": score, "parents": list(row.parent_ids or ()),
            "name": row.name, "seconds": row.seconds, "seconds_saved": row.seconds_saved,
            "suspect": bool(row.suspect), "reused_from": row.reused_from, "error_class": row.error_class,
            "created_at": _iso(row.created_at), "finished_at": _iso(row.finished_at),
            "scored": row.status == TrialStatus.SUCCEEDED.value and score is not None and not row.suspect
            and row.reused_from is None,
        })
    return out


def direction_of(record: Record) -> Direction:
    return run_direction(record)


def best_so_far(summaries: list[dict[str, Any]], direction: Direction) -> list[dict[str, Any]]:
    """The best score after each finished trial (by id), with the trial that holds it; only trusted scores count."""
    curve: list[dict[str, Any]] = []
    best: float | None = None
    holder: int | None = None
    for s in summaries:
        if s["scored"] and (best is None or direction.better(s["score"], best)):
            best, holder = s["score"], s["id"]
        if best is not None:
            curve.append({"trial": s["id"], "best": best, "holder": holder, "at": s["finished_at"]})
    return curve


def improvements(curve: list[dict[str, Any]]) -> int:
    """How many times the best score moved (the first score counts as one)."""
    return sum(1 for i, p in enumerate(curve) if i == 0 or p["holder"] != curve[i - 1]["holder"])


def llm_usage(record: Record) -> list[Any]:
    """Every LLM call's model, role, tokens, cost, retries and error, without its prompt and reply (which can be
    megabytes over a long run)."""
    c = t.llm_calls.c
    query = select(c.model, c.role, c.tokens_in, c.tokens_out, c.cost_usd, c.retries, c.error).order_by(c.id)
    if t.llm_calls.name in record._run_scoped:  # a version-3 record (one run) has no run_id column
        query = query.where(c.run_id == record.run_id)
    with record._engine.connect() as conn:  # read through the record's own engine
        return list(conn.execute(query).all())


def change_mark(record: Record) -> tuple[Any, ...]:
    """A cheap fingerprint of the trials' state (how many trials per status, the newest id): it changes whenever a
    trial is added or changes status, so the live stream reads the trials only then."""
    c = t.trials.c
    query = (select(c.status, func.count(), func.max(c.id)).where(c.run_id == record.run_id).group_by(c.status)
             .order_by(c.status))
    with record._engine.connect() as conn:  # read through the record's own engine
        return tuple(tuple(row) for row in conn.execute(query).all())


def trial_facts(record: Record, trial_id: int | None = None) -> dict[int, dict[str, Any]]:
    """What the sampler and proposer decided for each trial (island, cell, model arm, migration...), from the
    trials' `facts` column; {} for a record made before that column existed."""
    with record._engine.connect() as conn:  # read through the record's own engine
        if "facts" not in {c["name"] for c in inspect(conn).get_columns("trials")}:
            return {}
        trials = table("trials", column("id"), column("run_id"), column("facts", JSON))
        query = select(trials.c.id, trials.c.facts).where(trials.c.run_id == record.run_id).order_by(trials.c.id)
        if trial_id is not None:
            query = query.where(trials.c.id == trial_id)
        return {row.id: dict(row.facts) for row in conn.execute(query).all() if isinstance(row.facts, dict)}

"""Upgrading an older record's rows to the current schema version, once its missing tables and columns are added
(schema.py): version 4 holds many runs in one database, so what version 3 kept for its one run globally is given
that run's id."""

from __future__ import annotations

from sqlalchemy import JSON, Connection, Engine, String, column, func, inspect, select, table, update

from evoforge.memory import tables as t

LEGACY_STATE = table(  # version 3's state of its one run, key → value
    "loop_state", column("key", String), column("value", JSON), column("updated_at", t.UTCDateTime))


def upgrade_to_4(engine: Engine) -> None:
    """A version-3 record (one run): the run's trial count, its agendas' and LLM calls' run id, and its component
    state (the global `loop_state`, kept as it was) copied into `run_state`. Only empty fields are filled, so two
    openers upgrading at once (SQLite: one after the other, in BEGIN IMMEDIATE) leave the same rows."""
    legacy = "loop_state" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        _fill(conn, legacy)
        conn.commit()


def _fill(conn: Connection, legacy: bool) -> None:
    counted = select(func.count()).where(t.trials.c.run_id == t.runs.c.id).scalar_subquery()
    conn.execute(update(t.runs).where(t.runs.c.trial_count.is_(None)).values(trial_count=counted))
    first = conn.execute(select(func.min(t.runs.c.id))).scalar()
    if first is None:
        return  # no run yet: nothing was kept for one
    for kept in (t.agendas, t.llm_calls):
        conn.execute(update(kept).where(kept.c.run_id.is_(None)).values(run_id=first))
    if not legacy:
        return
    have = set(conn.execute(select(t.run_state.c.key).where(t.run_state.c.run_id == first)).scalars())
    rows = [dict(run_id=first, key=r.key, value=r.value, updated_at=r.updated_at)
            for r in conn.execute(select(LEGACY_STATE.c.key, LEGACY_STATE.c.value, LEGACY_STATE.c.updated_at))
            if r.key not in have]
    if rows:
        conn.execute(t.run_state.insert(), rows)

"""The knowledge view: the run's cognition base (its --kb, or RUN_DIR/knowledge.db), read-only, searchable by
words, each item with its provenance and support."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import SQLAlchemyError

from evoforge.dashboard.sources import RunSource
from evoforge.memory.cognition._schema import items_table
from evoforge.memory.schema import on_sqlite_connect_read_only

LIMIT = 500


def _matches(row: Any, words: list[str]) -> bool:
    text = " ".join([row.title, row.content, row.trigger, row.source, " ".join(row.tags or ())]).lower()
    return all(w in text for w in words)


def knowledge(source: RunSource, query: str = "", kind: str | None = None) -> dict[str, Any]:
    """Items of the run's knowledge base whose text holds every word of `query` (all when empty), most supported
    first, at most LIMIT; `available` is False when the run folder has no base."""
    with source.record() as record:
        url = source.knowledge_url(record.run_info().config)
    if url is None:
        return {"available": False, "items": [], "total": 0}
    engine = create_engine(url)
    event.listen(engine, "connect", on_sqlite_connect_read_only)
    cols = items_table.c
    stmt = select(cols.id, cols.kind, cols.title, cols.content, cols.trigger, cols.source, cols.tags, cols.support,
                  cols.contradictions, cols.effect_sign, cols.created_at, cols.provenance)
    if kind:
        stmt = stmt.where(cols.kind == kind)
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt.order_by(cols.support.desc(), cols.id)).all()
    except SQLAlchemyError as exc:
        return {"available": False, "items": [], "total": 0, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        engine.dispose()
    words = [w for w in query.lower().split() if w]
    found = [r for r in rows if _matches(r, words)]
    items = [{"id": r.id, "kind": r.kind, "title": r.title, "content": r.content, "trigger": r.trigger,
              "source": r.source, "tags": list(r.tags or ()), "support": r.support,
              "contradictions": r.contradictions, "effect_sign": r.effect_sign,
              "created_at": r.created_at.isoformat() if r.created_at else None, "provenance": r.provenance}
             for r in found[:LIMIT]]
    return {"available": True, "items": items, "total": len(rows), "matched": len(found)}

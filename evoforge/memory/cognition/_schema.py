"""The cognition base's tables and engine: `knowledge_items` in its own database (SQLite file or any SQLAlchemy URL),
vectors stored as float32 bytes beside the text so each item is embedded once, and `encoded_texts`, the vectors of
other texts (queries, motivations, lessons) keyed by encoder and text hash, so each is encoded once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from evoforge.memory.cognition.items import KnowledgeError, KnowledgeItem
from evoforge.memory.schema import on_sqlite_connect

LESSON_LOCK_KEY = 0x65766F6C65  # pg_advisory_lock key ("evole") held while a lesson is merged or added

metadata = MetaData()

items_table = Table(
    "knowledge_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("trigger", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("support", Integer, nullable=False, default=1),
    Column("contradictions", Integer, nullable=False, default=0),
    Column("effect_sign", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("provenance", JSON, nullable=False),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("index_text", Text, nullable=False),
    Column("embedding", LargeBinary, nullable=True),
    Column("embedding_model", String(64), nullable=True),
)

cache_metadata = MetaData()  # created apart: a base that cannot get this table still serves, without the cache

encoded_table = Table(
    "encoded_texts",
    cache_metadata,
    Column("encoder", String(64), primary_key=True),
    Column("text_hash", String(64), primary_key=True),  # sha256 of the UTF-8 text, hex
    Column("vector", LargeBinary, nullable=False),  # float32 bytes
)


def shown(path_or_url: str | Path) -> str:
    """The base's location for messages: a URL without its password."""
    raw = str(path_or_url)
    if "://" not in raw:
        return raw
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return raw.split("://", 1)[0] + "://…"


def make_engine(path_or_url: str | Path) -> Engine:
    """A plain path is a SQLite file (its folder is created); anything with `://` is a SQLAlchemy URL."""
    raw = str(path_or_url)
    if "://" not in raw:
        path = Path(raw).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KnowledgeError(f"cannot create the folder of knowledge base {path}: {exc}") from exc
        raw = f"sqlite:///{path}"
    try:
        url = make_url(raw)
        sqlite = url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if sqlite and url.database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise KnowledgeError(f"cannot open knowledge base {shown(path_or_url)}: {exc}; give a file path or a database "
                             "URL") from exc
    if sqlite:
        event.listen(engine, "connect", on_sqlite_connect)
    return engine


def insert_new(dialect: str) -> Insert:
    """INSERT into knowledge_items that skips a row whose fingerprint is already stored (PostgreSQL, SQLite: ON
    CONFLICT DO NOTHING), so concurrent writers of one item do not fail; a plain INSERT elsewhere."""
    if dialect == "postgresql":
        return postgresql.insert(items_table).on_conflict_do_nothing(index_elements=[items_table.c.fingerprint])
    if dialect == "sqlite":
        return sqlite.insert(items_table).on_conflict_do_nothing(index_elements=[items_table.c.fingerprint])
    return insert(items_table)


@contextmanager
def lesson_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one lesson write at a time across all processes on the base (a session advisory lock), so a
    lesson and its near-duplicate written at the same moment by two runners merge instead of both being added;
    elsewhere nothing (SQLite serialises writers itself; identical lessons are caught by their fingerprint)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LESSON_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LESSON_LOCK_KEY})
            conn.commit()


def utcnow() -> datetime:
    return datetime.now(UTC)


def item_row(item: KnowledgeItem, vector: np.ndarray | None, model: str | None) -> dict[str, Any]:
    """The table row for a new item (id assigned by the database)."""
    return {
        "kind": item.kind, "title": item.title, "content": item.content, "trigger": item.trigger,
        "source": item.source, "tags": list(item.tags), "support": item.support,
        "contradictions": item.contradictions, "effect_sign": item.effect_sign,
        "created_at": item.created_at or utcnow(), "provenance": dict(item.provenance),
        "fingerprint": item.fingerprint(), "index_text": item.index_text(),
        "embedding": None if vector is None else np.asarray(vector, dtype=np.float32).tobytes(),
        "embedding_model": None if vector is None else model,
    }


def item_from_row(row: Any) -> KnowledgeItem:
    created = row.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return KnowledgeItem(
        id=row.id, kind=row.kind, title=row.title, content=row.content, trigger=row.trigger, source=row.source,
        tags=tuple(row.tags or ()), support=row.support, contradictions=row.contradictions,
        created_at=created, provenance=dict(row.provenance or {}), effect_sign=row.effect_sign,
    )

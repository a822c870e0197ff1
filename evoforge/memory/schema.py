"""Opening a SQLite or PostgreSQL database that other processes may open at the same moment: the SQLite
connection set-up, the creation of a schema's missing tables, and the migration of older records (a column added
since: `ALTER TABLE ... ADD COLUMN`, nullable, so older rows read as "none").

Two processes opening one fresh database (a run starting while `evoforge status` polls its record, two runs
sharing a cognition base) both check that a table is missing and both issue CREATE TABLE; the loser gets "table
already exists" (or, on SQLite, "database is locked" when both try to upgrade a read lock). On SQLite the check and
the CREATEs run in one BEGIN IMMEDIATE transaction, so openers take turns (waiting on the busy timeout) and each
sees what the previous one made. Elsewhere (PostgreSQL) a lost race means one more table exists, so retrying is
bounded by the number of tables.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

_RACE_MARKERS = ("already exists", "duplicate key")  # SQLite, PostgreSQL (pg_type unique index)
BUSY_TIMEOUT_MS = 30_000
_WAL_ATTEMPTS, _WAL_PAUSE_S = 100, 0.05  # switching to WAL fails at once (no busy wait) while another opener holds it


def on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Connection set-up for SQLite files: wait on locks, WAL (readers never block the writer), foreign keys.

    `PRAGMA journal_mode=WAL` on a fresh file answers "database is locked" without waiting when another process is
    switching it at the same moment; it is retried for up to five seconds."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for attempt in range(_WAL_ATTEMPTS):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt + 1 == _WAL_ATTEMPTS:
                    raise
                time.sleep(_WAL_PAUSE_S)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def read_only_uri(path: Path) -> str:
    """A SQLAlchemy URL opening the SQLite file at `path` for reading only, wherever it lies.

    A WAL database normally needs its `-shm` file created next to it, even to read. In a folder that can be
    written, `mode=ro` is enough (and sees what a live run commits). In one that cannot (an archived run, a
    read-only mount, another user's run): where a `-shm` file exists (a writer is live, or was killed and left its
    `-wal`), `mode=ro` reads through it; where none does, no writer has the file open and none can make one, so it
    is opened as `immutable` (the only way SQLite reads such a file)."""
    params = "mode=ro"
    if not os.access(path.parent, os.W_OK) and not Path(f"{path}-shm").exists():
        params = "immutable=1"
    return f"sqlite:///file:{quote(str(path))}?{params}&uri=true"


def on_sqlite_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    """Connection set-up for a reader: wait on a writer's locks, and refuse any write (`query_only`)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()


def create_missing_tables(metadata: MetaData, engine: Engine) -> None:
    """`metadata.create_all(engine)`, safe against concurrent openers; other errors raise."""
    if set(metadata.tables) <= set(inspect(engine).get_table_names()):
        return  # the common case (status, resume, a second run on a base): a read, no lock taken
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before looking: openers go one by one
            metadata.create_all(conn)
            conn.commit()
        return
    attempts = len(metadata.tables) + 1
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except SQLAlchemyError as exc:
            text = str(exc).lower()
            if attempt + 1 == attempts or not any(marker in text for marker in _RACE_MARKERS):
                raise


def present_columns(table: Table, engine: Engine) -> list[Column[Any]]:
    """The columns of `table` that the database holds (a read-only opener of an older record reads only those)."""
    try:
        names = {column["name"] for column in inspect(engine).get_columns(table.name)}
    except NoSuchTableError:  # not made yet (a run starting): reads fail later, as they did, with the usual message
        return list(table.c)
    return [column for column in table.c if column.name in names]


def add_missing_columns(metadata: MetaData, engine: Engine) -> None:
    """Migrate a record made by an older evoforge: add each nullable column its tables lack. Safe against
    concurrent openers (SQLite: one BEGIN IMMEDIATE transaction that looks again; elsewhere a column another
    opener added first is taken as done)."""
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    missing = []
    for table in metadata.sorted_tables:
        if table.name in existing:
            have = {column["name"] for column in inspector.get_columns(table.name)}
            missing += [(table, column) for column in table.c if column.name not in have]
    if not missing:
        return  # the common case: one read
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        for table, column in missing:
            if not column.nullable:
                raise RuntimeError(f"cannot add the required column {table.name}.{column.name} to an older record")
            have = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")} \
                if engine.dialect.name == "sqlite" else set()
            if column.name in have:
                continue  # another opener migrated it meanwhile
            kind = column.type.compile(dialect=engine.dialect)
            statement = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"
            if engine.dialect.name != "sqlite":
                statement = f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {column.name} {kind}"
            conn.execute(text(statement))
        conn.commit()


def stamp_version(engine: Engine, table: Any, current: int, shown: str) -> None:
    """After the migrations (missing tables and columns added): refuse a record written by a newer evoforge, and
    stamp an older one (or one from before versions were kept) with `current`."""
    found = recorded_version(engine, table, shown, current)
    if found is None or found < current:
        with engine.begin() as conn:
            conn.execute(table.insert().values(version=current))


def recorded_version(engine: Engine, table: Any, shown: str, current: int) -> int | None:
    """The record's schema version (None before versions were kept); RecordTooNew past `current`."""
    if table.name not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        found = conn.execute(select(func.max(table.c.version))).scalar()
    if found is not None and found > current:
        raise RecordTooNew(f"the record at {shown} was written by a newer evoforge (schema version {found}; this one "
                           f"reads up to {current}): upgrade evoforge (pip install -U evoforge) to open it")
    return found


class RecordTooNew(RuntimeError):
    """The record's schema is newer than this evoforge knows."""

"""What tells that the cognition base has changed, and the memo of searches it keeps valid: the researcher asks with
the same query whenever the same parent is picked again, and until the base changes the hits are the same."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from evoforge.memory.cognition.items import Hit

log = logging.getLogger(__name__)

MEMO_SEARCHES = 256  # distinct (query, k, kinds) kept per version of the base

Version = tuple[int, int]


class BaseVersion:
    """A value that differs whenever the base may have changed: this object's count of the writes made through it
    (`bump`, after each commit), and on a SQLite file SQLite's `PRAGMA data_version`, read on a connection of its
    own, which moves whenever any other connection (another process, another base object, this one's pooled
    connections) commits to the file. A database with no such signal (PostgreSQL) has no version: nothing is
    memoized there, since other processes may write to it unseen."""

    def __init__(self, engine: Engine) -> None:
        self._writes = 0
        self._lock = threading.Lock()
        self._conn: Any = None  # the pool's connection kept for the pragma
        self._tracked = engine.dialect.name == "sqlite"
        if self._tracked and engine.url.database not in (None, "", ":memory:"):  # a file: other writers possible
            try:
                self._conn = engine.raw_connection()
            except SQLAlchemyError as exc:
                log.debug("cognition base: no connection for data_version (%s); searches not memoized", exc)
                self._tracked = False

    def bump(self) -> None:
        """This process wrote to the base (call after the commit)."""
        with self._lock:
            self._writes += 1

    def current(self) -> Version | None:
        """The base's version now, or None when it cannot be told (then nothing may be reused)."""
        if not self._tracked:
            return None
        with self._lock:
            if self._conn is None:  # in memory: only this process's writes exist
                return (self._writes, 0)
            try:
                cursor = self._conn.cursor()
                try:
                    (data_version,) = cursor.execute("PRAGMA data_version").fetchone()
                finally:
                    cursor.close()
            except sqlite3.Error:
                return None
            return (self._writes, int(data_version))

    def close(self) -> None:
        with self._lock:
            self._tracked = False
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()


class SearchMemo:
    """Hits by (query, k, kinds) for one version of the base: a lookup under another version finds nothing and drops
    what was kept. Hits are frozen; each caller gets its own list."""

    def __init__(self, size: int = MEMO_SEARCHES) -> None:
        self._size = size
        self._version: Version | None = None
        self._hits: OrderedDict[Hashable, list[Hit]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: Version, key: Hashable) -> list[Hit] | None:
        with self._lock:
            if version != self._version:
                self._version = version
                self._hits.clear()
                return None
            hits = self._hits.get(key)
            if hits is None:
                return None
            self._hits.move_to_end(key)
            return list(hits)

    def put(self, version: Version, key: Hashable, hits: list[Hit]) -> None:
        with self._lock:
            if version != self._version:  # the base changed while these were searched: keep them under their own
                self._version = version
                self._hits.clear()
            self._hits[key] = list(hits)
            if len(self._hits) > self._size:
                self._hits.popitem(last=False)

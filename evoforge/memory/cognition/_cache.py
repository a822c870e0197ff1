"""Each distinct text encoded once: the vectors of what the cognition base encodes besides its items (retrieval
queries, lessons, the novelty gate's motivations) kept in memory by text, and in the base's own database by encoder
name and text hash, so that they survive a resume and are shared by runs on one base."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from evoforge.memory.cognition._schema import encoded_table as e
from evoforge.memory.cognition.embeddings import Encoder

log = logging.getLogger(__name__)

MEMORY_VECTORS = 4096  # vectors kept in memory (1.5 kB each at 384 dimensions); the database keeps them all
KNOWN_KEYS = 200_000  # keys of stored vectors held in memory (~50 B each); a larger table is asked about each miss
SAVE_EVERY = 32  # new vectors written together, in one statement (a crash loses at most these: encoded again)
_CHUNK = 500  # keys per lookup (SQL limits bound parameters)
# built once and run with parameters (building and keying a statement cost SQLAlchemy more than SQLite running it)
_LOAD = select(e.c.text_hash, e.c.vector).where(e.c.encoder == bindparam("encoder_"),
                                                e.c.text_hash.in_(bindparam("hashes_", expanding=True)))
_KEYS = select(e.c.text_hash).where(e.c.encoder == bindparam("encoder_")).limit(bindparam("limit_"))


def text_key(text: str) -> str:
    """The text's SHA-256, hex (lone surrogates kept, so distinct texts never share a key)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _short(key: str) -> int:
    """60 bits of a key: what the set of stored keys holds (a collision only costs a look-up that finds nothing)."""
    return int(key[:15], 16)


def _insert_new(dialect: str) -> Insert:
    """INSERT that skips a vector another process has just stored (the rest of the batch is still written)."""
    if dialect == "postgresql":
        return postgresql.insert(e).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(e).on_conflict_do_nothing()
    return insert(e)


class CachedEncoder:
    """An Encoder in front of another, with its name and dimension: a text seen before (by this process, or by any
    that wrote to the same base with the same encoder) is not encoded again; the misses of one call go to the
    encoder as one batch.

    A text this process has seen is answered from memory, found by the text itself: no hash to compute (the novelty
    gate asks for a few hundred motivations a trial, nearly all seen before; the `MEMORY_VECTORS` texts kept are
    queries, lessons and motivations, a few kB at most each). The keys the table holds for this encoder are read
    once, at the first miss, so a new text goes to the encoder without a look-up that would find nothing (a text another
    process stores later is encoded again here: the same vector, never a wrong one). New vectors are written
    `SAVE_EVERY` at a time, in one statement, and the rest by `flush` (the base's `close`)."""

    def __init__(self, inner: Encoder, engine: Engine, memory: int = MEMORY_VECTORS) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._engine = engine
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._capacity = memory
        self._known: set[int] | None = None  # short keys of stored vectors; None: not read yet
        self._every_miss_looked_up = False  # the table held too many keys to keep: each miss is looked up
        self._pending: dict[str, np.ndarray] = {}  # encoded, not written yet
        self._insert = _insert_new(engine.dialect.name)
        self._lock = threading.Lock()
        self._warned = False

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            memory = self._memory
            found: dict[str, np.ndarray] = {}
            for text in texts:
                vector = memory.get(text)
                if vector is not None:
                    memory.move_to_end(text)
                    found[text] = vector
            missing = [text for text in dict.fromkeys(texts) if text not in found]
            if missing:
                found.update(self._fetch(missing))
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.array([found[text] for text in texts], dtype=np.float32)

    def _fetch(self, texts: list[str]) -> dict[str, np.ndarray]:
        """(Under the lock.) The vectors of distinct texts not in memory: not written yet, stored, or encoded now."""
        keys = {text: text_key(text) for text in texts}
        found = {text: self._pending[key] for text, key in keys.items() if key in self._pending}
        stored = self._maybe_stored([key for text, key in keys.items() if text not in found])
        if stored:
            loaded = self._load(stored)
            found.update((text, loaded[key]) for text, key in keys.items() if key in loaded)
        new = [text for text in texts if text not in found]
        if new:
            for text, vector in zip(new, self.inner.encode(new), strict=True):
                found[text] = self._pending[keys[text]] = vector
            if len(self._pending) >= SAVE_EVERY:
                self._flush()
        for text in texts:
            self._remember(text, found[text])
        return found

    def flush(self) -> None:
        """Write the vectors not written yet."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            self._store(pending)

    def _maybe_stored(self, keys: list[str]) -> list[str]:
        """Those of `keys` the table may hold (all of them when its keys are too many to keep in memory)."""
        if not keys:
            return []
        if self._known is None:
            self._known = self._read_keys()
        if self._every_miss_looked_up:
            return keys
        return [key for key in keys if _short(key) in self._known]

    def _read_keys(self) -> set[int]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(_KEYS, {"encoder_": self.name, "limit_": KNOWN_KEYS + 1}).scalars().all()
        except SQLAlchemyError as exc:
            self._warn("read", exc)
            return set()
        if len(rows) > KNOWN_KEYS:
            self._every_miss_looked_up = True
            return set()
        return {_short(key) for key in rows}

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._memory[text] = vector
        if len(self._memory) > self._capacity:
            self._memory.popitem(last=False)

    def _load(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these keys (a row of another dimension is ignored: encoded again)."""
        found: dict[str, np.ndarray] = {}
        try:
            with self._engine.connect() as conn:
                for start in range(0, len(keys), _CHUNK):
                    chunk = {"encoder_": self.name, "hashes_": keys[start : start + _CHUNK]}
                    for key, blob in conn.execute(_LOAD, chunk):
                        vector = np.frombuffer(blob, dtype=np.float32)
                        if vector.shape == (self.dim,):
                            found[key] = vector
        except SQLAlchemyError as exc:
            self._warn("read", exc)
        return found

    def _store(self, vectors: dict[str, np.ndarray]) -> None:
        """Write new vectors, in one statement. A failed write loses only the saving, never the result: a vector
        another process wrote first is skipped (or, where the database cannot skip it, the batch is no news); any
        other failure (a read-only base, no table) is logged once."""
        rows = [{"encoder": self.name, "text_hash": key, "vector": np.asarray(vec, dtype=np.float32).tobytes()}
                for key, vec in vectors.items()]
        try:
            with self._engine.begin() as conn:
                conn.execute(self._insert, rows)
        except IntegrityError:
            log.debug("cognition base: encoded texts already saved by another process")
        except SQLAlchemyError as exc:
            self._warn("save", exc)
            return
        if self._known is not None:
            self._known.update(_short(key) for key in vectors)
            if len(self._known) > KNOWN_KEYS:  # bounded: from now on each miss is looked up
                self._known.clear()
                self._every_miss_looked_up = True

    def _warn(self, what: str, exc: SQLAlchemyError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cognition base: could not %s encoded texts (they are encoded again when needed): %s",
                        what, str(exc).splitlines()[0])

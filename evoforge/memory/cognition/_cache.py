"""Each distinct text encoded once: the vectors of what the cognition base encodes besides its items (retrieval
queries, lessons, the novelty gate's motivations) kept by encoder name and text hash, in memory and in the base's
own database, so that they survive a resume and are shared by runs on one base."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from evoforge.memory.cognition._schema import encoded_table as e
from evoforge.memory.cognition.embeddings import Encoder

log = logging.getLogger(__name__)

MEMORY_VECTORS = 4096  # vectors kept in memory (1.5 kB each at 384 dimensions); the database keeps them all
_CHUNK = 500  # keys per lookup (SQL limits bound parameters)
# built once and run with parameters (building and keying a statement cost SQLAlchemy more than SQLite running it)
_LOAD = select(e.c.text_hash, e.c.vector).where(e.c.encoder == bindparam("encoder_"),
                                                e.c.text_hash.in_(bindparam("hashes_", expanding=True)))
_STORE = insert(e)


def text_key(text: str) -> str:
    """The text's SHA-256, hex (lone surrogates kept, so distinct texts never share a key)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CachedEncoder:
    """An Encoder in front of another, with its name and dimension: a text seen before (by this process, or by any
    that wrote to the same base with the same encoder) is not encoded again; the misses of one call go to the
    encoder as one batch."""

    def __init__(self, inner: Encoder, engine: Engine, memory: int = MEMORY_VECTORS) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._engine = engine
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._capacity = memory
        self._lock = threading.Lock()
        self._warned = False

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(text) for text in texts]
        with self._lock:
            found: dict[str, np.ndarray] = {}
            for key in keys:
                if key in self._memory:
                    self._memory.move_to_end(key)
                    found[key] = self._memory[key]
            unseen = [key for key in dict.fromkeys(keys) if key not in found]
            if unseen:
                found.update(self._load(unseen))
            new = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
            if new:
                fresh = dict(zip(new, self.inner.encode(list(new.values())), strict=True))
                self._store(fresh)
                found.update(fresh)
            for key in unseen:
                self._remember(key, found[key])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._memory[key] = vector
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
        """Write new vectors. A failed write loses only the saving, never the result: another process that wrote
        one of them first is no news; any other failure (a read-only base, no table) is logged once."""
        rows = [{"encoder": self.name, "text_hash": key, "vector": np.asarray(vec, dtype=np.float32).tobytes()}
                for key, vec in vectors.items()]
        try:
            with self._engine.begin() as conn:
                conn.execute(_STORE, rows)
        except IntegrityError:
            log.debug("cognition base: encoded texts already saved by another process")
        except SQLAlchemyError as exc:
            self._warn("save", exc)

    def _warn(self, what: str, exc: SQLAlchemyError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cognition base: could not %s encoded texts (they are encoded again when needed): %s",
                        what, str(exc).splitlines()[0])

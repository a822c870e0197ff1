"""The in-memory side of the cognition base: the vector index and the kind of every item, kept in step with the
database by reading only rows newer than the last one seen (other processes may add items to a shared base)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, bindparam, select, update

from evoforge.memory.cognition._schema import items_table as t
from evoforge.memory.cognition.embeddings import Encoder
from evoforge.memory.cognition.index import ExactIndex, VectorIndex, ann_class, make_index
from evoforge.memory.cognition.lexical import LexicalIndex

log = logging.getLogger(__name__)
# the rows newer than the last seen (at every search): built once, run with a parameter
_NEWER = (select(t.c.id, t.c.kind, t.c.index_text, t.c.embedding, t.c.embedding_model)
          .where(t.c.id > bindparam("seen_")).order_by(t.c.id))


class DenseState:
    """Vector index + id→kind map, synced from the table; rows embedded by another model (or none) are
    re-embedded once with this encoder and written back. Queries are encoded by `queries` (the base's cache)."""

    def __init__(self, engine: Engine, encoder: Encoder | None, lexical: LexicalIndex, ann_threshold: int,
                 queries: Encoder | None = None) -> None:
        self._engine = engine
        self.encoder = encoder
        self.queries = queries or encoder
        self._lexical = lexical
        self._ann_threshold = ann_threshold
        self.index: VectorIndex | None = None
        self.kinds: dict[int, str] = {}
        self._seen = 0
        self._lock = threading.Lock()

    def sync(self) -> None:
        with self._lock:
            with self._engine.connect() as conn:
                rows = conn.execute(_NEWER, {"seen_": self._seen}).all()
            if not rows:
                return
            self._lexical.sync([(row.id, row.kind, row.index_text) for row in rows])
            self.kinds.update({row.id: row.kind for row in rows})
            if self.encoder is not None:
                self._add_vectors(rows)
            self._seen = rows[-1].id

    def _add_vectors(self, rows: Sequence) -> None:
        assert self.encoder is not None
        dim, model = self.encoder.dim, self.encoder.name
        stale = [row for row in rows if row.embedding is None or row.embedding_model != model]
        fresh: dict[int, np.ndarray] = {}
        if stale:
            log.info("cognition base: embedding %d items with %s", len(stale), model)
            vectors = self.encoder.encode([row.index_text for row in stale])
            fresh = {row.id: vec for row, vec in zip(stale, vectors, strict=True)}
            stmt = (update(t).where(t.c.id == bindparam("item_id"))
                    .values(embedding=bindparam("vec"), embedding_model=model))
            with self._engine.begin() as conn:
                conn.execute(stmt, [{"item_id": i, "vec": vec.tobytes()} for i, vec in fresh.items()])
        matrix = np.empty((len(rows), dim), dtype=np.float32)
        for i, row in enumerate(rows):
            matrix[i] = fresh[row.id] if row.id in fresh else np.frombuffer(row.embedding, dtype=np.float32)
        self._grow_index(len(rows))
        assert self.index is not None
        self.index.add(np.array([row.id for row in rows], dtype=np.int64), matrix)

    def _grow_index(self, incoming: int) -> None:
        """Create the index, or move from exact to HNSW when the base crosses the ANN threshold."""
        assert self.encoder is not None
        total = incoming + (len(self.index) if self.index is not None else 0)
        if self.index is None:
            self.index = make_index(self.encoder.dim, total, self._ann_threshold)
        elif isinstance(self.index, ExactIndex) and total >= self._ann_threshold and ann_class() is not None:
            old = self.index
            self.index = make_index(self.encoder.dim, total, self._ann_threshold)
            ids = old.ids()
            self.index.add(ids, old.vectors(ids.tolist()))

    def search(self, query: str, n: int, kinds: Sequence[str] | None) -> list[tuple[int, float]]:
        """(id, cosine) of the n items nearest to the query, best first, of the given kinds."""
        if self.queries is None or self.index is None or not len(self.index):
            return []
        vector = self.queries.encode([query])[0]
        found, scores = self.index.search(vector, n * 4 if kinds else n)
        scored = list(zip(found.tolist(), scores.tolist(), strict=True))
        if kinds:
            allowed = set(kinds)
            scored = [(i, score) for i, score in scored if self.kinds.get(i) in allowed]
        return scored[:n]

    def nearest(self, vector: np.ndarray, n: int = 1) -> list[tuple[int, float]]:
        """The n closest stored items to a unit vector with their cosines, closest first (empty for an empty index)."""
        if self.index is None:
            return []
        ids, scores = self.index.search(vector, n)
        return [(int(i), float(score)) for i, score in zip(ids.tolist(), scores.tolist(), strict=True)]

"""Vector indexes over the items' embeddings: exact inner-product search in numpy for small bases, and an HNSW
index (faiss-cpu, else hnswlib) for large ones. Vectors are unit length, so inner product is cosine."""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 96


class VectorIndex(ABC):
    """Item ids with their vectors; `search` returns (ids, cosines) best first."""

    kind = "base"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        """The ids held, in insertion order."""
        return self._ids.copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start = len(self._ids)
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._pos.update({int(item_id): start + i for i, item_id in enumerate(ids)})
        self._add_vectors(np.ascontiguousarray(vectors, dtype=np.float32))

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of these ids, in order (rows of zeros for unknown ids)."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        known = [(row, self._pos[i]) for row, i in enumerate(ids) if i in self._pos]
        if known:
            rows, positions = zip(*known, strict=True)
            out[list(rows)] = self._rows(np.array(positions, dtype=np.int64))
        return out

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self._ids) or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        positions, scores = self._search(np.ascontiguousarray(query, dtype=np.float32), min(n, len(self._ids)))
        keep = positions >= 0
        return self._ids[positions[keep]], scores[keep]

    @abstractmethod
    def _add_vectors(self, vectors: np.ndarray) -> None:
        """Implemented by each index."""

    @abstractmethod
    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """Implemented by each index."""

    @abstractmethod
    def _search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Implemented by each index."""


class ExactIndex(VectorIndex):
    """Brute-force inner product over a growing matrix (capacity doubles, so appends are amortised O(1))."""

    kind = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._size = 0

    def _add_vectors(self, vectors: np.ndarray) -> None:
        needed = self._size + len(vectors)
        if needed > len(self._matrix):
            grown = np.zeros((max(needed, 2 * len(self._matrix), 64), self.dim), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
        self._matrix[self._size : needed] = vectors
        self._size = needed

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        return self._matrix[positions]

    def _search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._matrix[: self._size] @ query
        top = np.argpartition(-scores, n - 1)[:n] if n < self._size else np.arange(self._size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]


class FaissHNSWIndex(VectorIndex):
    """faiss IndexHNSWFlat with inner-product metric; approximate, logarithmic query time."""

    kind = "hnsw (faiss)"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        import faiss

        self._index: Any = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self._index.hnsw.efSearch = HNSW_EF_SEARCH

    def _add_vectors(self, vectors: np.ndarray) -> None:
        self._index.add(vectors)

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self._index.reconstruct_batch(positions), dtype=np.float32)

    def _search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.hnsw.efSearch = max(HNSW_EF_SEARCH, n)
        scores, positions = self._index.search(query[None, :], n)
        return positions[0], scores[0]


class HnswlibIndex(VectorIndex):
    """hnswlib with the inner-product space, used when faiss is not installed."""

    kind = "hnsw (hnswlib)"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        import hnswlib

        self._index: Any = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(max_elements=1024, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M)

    def _add_vectors(self, vectors: np.ndarray) -> None:
        needed = len(self._ids)
        if needed > self._index.get_max_elements():
            self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
        self._index.add_items(vectors, np.arange(needed - len(vectors), needed))

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self._index.get_items(positions.tolist()), dtype=np.float32)

    def _search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(max(HNSW_EF_SEARCH, n))
        labels, distances = self._index.knn_query(query[None, :], k=n)
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)


def ann_class() -> type[VectorIndex] | None:
    """The HNSW implementation available here (faiss first), or None."""
    if importlib.util.find_spec("faiss") is not None:
        return FaissHNSWIndex
    if importlib.util.find_spec("hnswlib") is not None:
        return HnswlibIndex
    return None


def make_index(dim: int, size: int, ann_threshold: int) -> VectorIndex:
    """Exact search below `ann_threshold` vectors, HNSW from there on (exact, with a warning, if none installed)."""
    if size < ann_threshold:
        return ExactIndex(dim)
    cls = ann_class()
    if cls is None:
        log.warning("cognition base: %d vectors but neither faiss-cpu nor hnswlib is installed; exact search", size)
        return ExactIndex(dim)
    return cls(dim)

"""Hybrid retrieval: reciprocal rank fusion of the lexical and dense rankings, then maximal marginal relevance
so that near-duplicates do not crowd the top of the list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoforge.memory.cognition.items import jaccard

RRF_K = 60


@dataclass(frozen=True)
class Ranked:
    """One fused candidate: its id, RRF score and 1-based rank in each input list (None: absent there)."""

    item_id: int
    score: float
    lexical_rank: int | None
    dense_rank: int | None


def reciprocal_rank_fusion(lexical: Sequence[int], dense: Sequence[int], k: int = RRF_K) -> list[Ranked]:
    """score(d) = Σ 1 / (k + rank of d in each list); best first, ties by the lexical rank then the id."""
    lex_rank = {item_id: rank for rank, item_id in enumerate(lexical, 1)}
    dense_rank = {item_id: rank for rank, item_id in enumerate(dense, 1)}
    fused = [
        Ranked(
            item_id,
            sum(1.0 / (k + ranks[item_id]) for ranks in (lex_rank, dense_rank) if item_id in ranks),
            lex_rank.get(item_id),
            dense_rank.get(item_id),
        )
        for item_id in dict.fromkeys([*lexical, *dense])
    ]
    return sorted(fused, key=lambda r: (-r.score, r.lexical_rank or 1 << 30, r.item_id))


def maximal_marginal_relevance(relevance: np.ndarray, similarity: np.ndarray, n: int, lam: float) -> list[int]:
    """Greedy MMR: each pick maximises lam·rel − (1−lam)·max sim to the picks so far. Relevance is min–max scaled
    over the candidates first (best 1, worst 0): fused RRF scores are compressed (rank 1 in one list scores half
    of rank 1 in both), and unscaled they would let an irrelevant but dissimilar item beat a relevant one.
    Returns positions into `relevance`."""
    count = len(relevance)
    if count == 0 or n <= 0:
        return []
    spread = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / spread if spread > 0 else np.ones(count)
    chosen = [int(np.argmax(rel))]
    max_sim = similarity[chosen[0]].astype(np.float64).copy()
    available = np.ones(count, dtype=bool)
    available[chosen[0]] = False
    while len(chosen) < min(n, count):
        gain = np.where(available, lam * rel - (1.0 - lam) * max_sim, -np.inf)
        pick = int(np.argmax(gain))
        chosen.append(pick)
        available[pick] = False
        max_sim = np.maximum(max_sim, similarity[pick])
    return chosen


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine of unit vectors."""
    return vectors @ vectors.T


def jaccard_matrix(token_sets: Sequence[set[str]]) -> np.ndarray:
    """Pairwise token Jaccard: the similarity MMR uses when there are no embeddings."""
    size = len(token_sets)
    out = np.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            out[i, j] = out[j, i] = jaccard(token_sets[i], token_sets[j])
    return out


def diversify(fused: list[Ranked], similarity: np.ndarray, k: int, lam: float) -> list[Ranked]:
    """The top k of `fused` re-ordered by MMR under `similarity` (a matrix over `fused`, in its order)."""
    relevance = np.array([r.score for r in fused], dtype=np.float64)
    return [fused[i] for i in maximal_marginal_relevance(relevance, similarity, k, lam)]

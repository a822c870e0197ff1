"""Hybrid retrieval: a convex combination of the lexical and dense scores, then maximal marginal relevance so that
near-duplicates do not crowd the top of the list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoforge.memory.cognition.items import jaccard


@dataclass(frozen=True)
class Ranked:
    """One fused candidate: its id, fused score and 1-based rank in each input list (None: absent there)."""

    item_id: int
    score: float
    lexical_rank: int | None
    dense_rank: int | None


def convex_fusion(lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]],
                  dense_weight: float) -> list[Ranked]:
    """score(d) = w·cosine(d) + (1 − w)·bm25(d) / best bm25, negatives and absences as 0. Best first, ties by the
    dense rank, then the lexical rank, then the id.

    Each half keeps its scale up to its theoretical range: cosine is already in [−1, 1]; BM25 has no upper bound,
    hence its division by the best. Unlike reciprocal rank fusion, which scores only ranks, an item that shares one
    incidental word with the query is not lifted above the item far closer in meaning merely for being in both
    lists; and unlike min–max scaling, the few hundredths of cosine that separate items of one topic (or the noise
    of an encoder that knows nothing of the query) are not stretched to outweigh a clear lexical match (Bruch et
    al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023). Measured: benchmarks/cognition.py
    --retrieval."""
    best = max((score for _, score in lexical), default=0.0)
    lex_score = {item_id: max(score, 0.0) / best for item_id, score in lexical} if best > 0 else {}
    dense_score = {item_id: max(score, 0.0) for item_id, score in dense}
    lex_rank = {item_id: rank for rank, (item_id, _) in enumerate(lexical, 1)}
    dense_rank = {item_id: rank for rank, (item_id, _) in enumerate(dense, 1)}
    fused = [
        Ranked(item_id, dense_weight * dense_score.get(item_id, 0.0)
               + (1.0 - dense_weight) * lex_score.get(item_id, 0.0),
               lex_rank.get(item_id), dense_rank.get(item_id))
        for item_id in dict.fromkeys([*dense_rank, *lex_rank])
    ]
    return sorted(fused, key=lambda r: (-r.score, r.dense_rank or 1 << 30, r.lexical_rank or 1 << 30, r.item_id))


def maximal_marginal_relevance(relevance: np.ndarray, similarity: np.ndarray, n: int, lam: float) -> list[int]:
    """Greedy MMR: each pick maximises lam·rel − (1−lam)·max sim to the picks so far. Relevance is min–max scaled
    over the candidates first (best 1, worst 0): unscaled, compressed fused scores would let an irrelevant but
    dissimilar item beat a relevant one.
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
    """The k items of `fused` (best first) that MMR picks under `similarity` (a matrix over `fused`, in its order),
    listed in `fused`'s order: diversity decides which items are shown, the score the order they are shown in."""
    relevance = np.array([r.score for r in fused], dtype=np.float64)
    return [fused[i] for i in sorted(maximal_marginal_relevance(relevance, similarity, k, lam))]

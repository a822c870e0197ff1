"""Retrieval memoized by the base's version: the same search again, with the base unchanged, runs no SQL and gives the
same hits as searching; any write to the base (this process, another base object on the file, another process)
makes the next search look again."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import event

from evoforge.memory.cognition import CognitionBase, KnowledgeItem
from evoforge.memory.cognition._dense import _NEWER
from evoforge.memory.cognition._memo import BaseVersion
from evoforge.memory.cognition.embeddings import HashEncoder

ITEMS = [
    KnowledgeItem(kind="heuristic", title="Corners first", content="Place circles in the corners first."),
    KnowledgeItem(kind="pitfall", title="Large instances", trigger="score drops when n grows",
                  content="Radii tuned for small n overlap for large n; rescale them with n."),
    KnowledgeItem(kind="note", title="Sourdough", content="Bake the bread at 220 degrees for forty minutes."),
    KnowledgeItem(kind="heuristic", title="Hexagonal grid", content="A hexagonal grid packs circles densely."),
]
LESSON = KnowledgeItem(kind="lesson", title="Shrink the margin", content="A smaller margin fits one more circle.")


def _statements(kb: CognitionBase) -> list[object]:
    executed: list[object] = []
    event.listen(kb._engine, "before_execute", lambda _conn, statement, *_: executed.append(statement))
    return executed


def _shown(hits: list) -> list[tuple[int | None, int, float]]:
    return [(h.item.id, h.item.support, h.score) for h in hits]


def test_the_same_search_again_runs_no_statement_and_an_unchanged_base_is_not_synced(tmp_path: Path) -> None:
    with CognitionBase.open(tmp_path / "kb.db", encoder=HashEncoder(32)) as kb:
        kb.add(ITEMS)
        first = kb.search("place circles in corners", 2)
        executed = _statements(kb)
        again = kb.search("place circles in corners", 2)
        assert executed == [] and again == first and again is not first
        again.clear()  # each caller's own list
        assert kb.search("place circles in corners", 2) == first
        assert kb.search("bake bread", 1)[0].item.title == "Sourdough"
        assert executed and _NEWER not in executed  # a new query: searched, but nothing to sync


def test_a_write_in_this_process_is_seen_by_the_next_search(tmp_path: Path) -> None:
    with CognitionBase.open(tmp_path / "kb.db", encoder=HashEncoder(32)) as kb:
        kb.add(ITEMS)
        assert "Shrink the margin" not in [h.item.title for h in kb.search("smaller margin circle", 3)]
        lesson_id, verdict = kb.add_lesson(LESSON)
        assert verdict == "added"
        hits = kb.search("smaller margin circle", 3)
        assert hits[0].item.id == lesson_id and hits[0].item.support == 1
        assert kb.add_lesson(LESSON) == (lesson_id, "merged")  # a merge changes the item: seen too
        assert kb.search("smaller margin circle", 3)[0].item.support == 2


def test_a_base_in_memory_is_memoized_and_sees_its_writes() -> None:
    with CognitionBase.open(":memory:", encoder=HashEncoder(32)) as kb:
        kb.add(ITEMS[:2])
        assert all(hit.item.title != "Sourdough" for hit in kb.search("bake bread", 1))
        executed = _statements(kb)
        kb.search("bake bread", 1)
        assert executed == []
        kb.add(ITEMS[2:])
        assert kb.search("bake bread", 1)[0].item.title == "Sourdough"


def test_writes_by_another_base_object_and_another_process_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    with CognitionBase.open(path, encoder=HashEncoder(32)) as reader, \
            CognitionBase.open(path, encoder=HashEncoder(32)) as writer:
        writer.add(ITEMS[:2])
        assert reader.search("bake bread forty minutes", 1)[0].item.title != "Sourdough"
        writer.add(ITEMS[2:])
        assert reader.search("bake bread forty minutes", 1)[0].item.title == "Sourdough"
        lesson_id, _ = writer.add_lesson(LESSON)
        assert reader.search("smaller margin circle", 1)[0].item.support == 1
        script = ("import sys\nfrom evoforge.memory.cognition import CognitionBase, KnowledgeItem\n"
                  "from evoforge.memory.cognition.embeddings import HashEncoder\n"
                  "with CognitionBase.open(sys.argv[1], encoder=HashEncoder(32)) as kb:\n"
                  "    print(kb.add_lesson(KnowledgeItem(kind='lesson', title='Shrink the margin',\n"
                  "        content='A smaller margin fits one more circle.')))\n")
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0 and f"({lesson_id}, 'merged')" in done.stdout, done.stderr[-2000:]
        assert reader.search("smaller margin circle", 1)[0].item.support == 2


def test_memoized_hits_are_those_of_searching(tmp_path: Path) -> None:
    """Searches, repeated at random between writes of all kinds, give what an uncached search gives then."""
    rng = random.Random(5)
    words = "place circles corners grid hexagonal margin bake bread radii large small rescale score".split()
    queries = [" ".join(rng.sample(words, rng.randint(1, 4))) for _ in range(8)]
    with CognitionBase.open(tmp_path / "kb.db", encoder=HashEncoder(32)) as kb:
        kb.add(ITEMS[:1])
        for step in range(80):
            if step % 10 == 9:
                title = f"{rng.choice(words).title()} {step}"
                kb.add_lesson(KnowledgeItem(kind="lesson", title=title, content=" ".join(rng.sample(words, 5))))
            if step % 25 == 24:
                kb.add(ITEMS[1 + step // 25 : 2 + step // 25])
            query, k = rng.choice(queries), rng.choice([1, 3])
            kinds = rng.choice([None, ("lesson",), ("heuristic", "note")])
            assert _shown(kb.search(query, k, kinds=kinds)) == _shown(kb._search(query, k, kinds)), step


def test_without_a_version_nothing_is_memoized() -> None:
    engine = SimpleNamespace(dialect=SimpleNamespace(name="postgresql"), url=SimpleNamespace(database="kb"))
    version = BaseVersion(engine)  # type: ignore[arg-type]
    assert version.current() is None  # other processes may write unseen: every search searches

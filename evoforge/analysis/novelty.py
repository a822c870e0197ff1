"""The embedding-free parts of the novelty gate: token-shingle text similarity (also used to de-duplicate
lessons) and the short LLM judge that decides whether a near-duplicate proposal is novel after all."""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import numpy as np

from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.llm.client import LLMClient, LLMError
from evoforge.models import LLMCall

SHINGLE = 3  # tokens per shingle
CODE_WEIGHT = 0.6  # share of the code in a proposal's similarity (the motivation has the rest)
# the most a motivation similarity can be: 1 for shingles, and a cosine of float32 unit vectors may pass 1 by rounding
MOTIVATION_MAX = 1.0 + 1e-4
JUDGE_CODE_CHARS = 6000
_TOKEN = re.compile(r"\w+|[^\w\s]")
_VERDICT_LINE = re.compile(r"verdict\s*[:=\-]\s*\**\s*(not\s+novel|novel|duplicate)", re.IGNORECASE)
_WORD = re.compile(r"\b(NOT\s+NOVEL|NOVEL|DUPLICATE)\b")


def _shingles(tokens: list[str], k: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


class _Entry:
    """A text's token count, its hashed shingles, and those as dense ids (made when first needed, per generation of
    the cache's vocabulary)."""

    __slots__ = ("count", "ids", "shingles")

    def __init__(self, count: int, shingles: frozenset[int]) -> None:
        self.count, self.shingles = count, shingles
        self.ids: tuple[int, np.ndarray] | None = None  # (generation, ids)


class _ShingleCache:
    """Texts' token counts and hashed 3-token shingles, most recently used first, bounded by their total number of
    shingles: the novelty gate compares every proposal with the same few hundred evaluated programs, and tokenizing
    them again each time was most of its cost (hash collisions of 64-bit shingle hashes are negligible).

    Each shingle hash also gets a dense id (the vocabulary, started afresh past `vocabulary` ids), so that how many
    shingles one text shares with each of many is counted by one numpy gather (`text_similarities`)."""

    def __init__(self, capacity: int, vocabulary: int) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0
        self._capacity = capacity
        self._ids: dict[int, int] = {}
        self._vocabulary = vocabulary
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> _Entry:
        return self.get_many([text])[0]

    def get_many(self, texts: Sequence[str]) -> list[_Entry]:
        with self._lock:
            entries = self._entries
            found = [entries.get(text) for text in texts]
            for text, entry in zip(texts, found, strict=True):
                if entry is not None:
                    entries.move_to_end(text)
        if None not in found:  # all seen before: the novelty gate's pool, nearly always
            return cast(list[_Entry], found)
        missing = {text: self._entry(text) for text, entry in zip(texts, found, strict=True) if entry is None}
        with self._lock:
            for text, entry in missing.items():
                if text not in self._entries:
                    self._entries[text] = entry
                    self._size += len(entry.shingles)
            while self._size > self._capacity and self._entries:
                self._size -= len(self._entries.popitem(last=False)[1].shingles)
        return [entry if entry is not None else missing[text] for text, entry in zip(texts, found, strict=True)]

    def dense(self, entries: Sequence[_Entry]) -> tuple[list[np.ndarray], int]:
        """The entries' shingles as ids of one generation, and how many ids that generation has."""
        with self._lock:
            if len(self._ids) > self._vocabulary:
                self._ids.clear()
                self._generation += 1
            generation = self._generation
            out = [entry.ids[1] if entry.ids is not None and entry.ids[0] == generation else self._dense(entry)
                   for entry in entries]
            return out, len(self._ids)

    def _dense(self, entry: _Entry) -> np.ndarray:
        """(Under the lock.) The entry's shingles as ids of this generation, given now."""
        ids = self._ids
        dense = np.array([ids.setdefault(h, len(ids)) for h in entry.shingles], dtype=np.int32)
        entry.ids = (self._generation, dense)
        return dense

    @staticmethod
    def _entry(text: str) -> _Entry:
        tokens = _TOKEN.findall(text.lower())
        return _Entry(len(tokens), frozenset(map(hash, _shingles(tokens, SHINGLE if len(tokens) >= SHINGLE else 1))))


_CACHE = _ShingleCache(capacity=1_000_000, vocabulary=500_000)  # shingles (~60 MB at most), ids (~50 MB at most)


def text_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' 3-token shingles (lower-cased words and symbols), in [0, 1];
    texts shorter than 3 tokens compare by single tokens. Two empty texts are identical (1.0)."""
    first, second = _CACHE.get_many([a, b])
    na, sa, nb, sb = first.count, first.shingles, second.count, second.shingles
    if not na or not nb:
        return 1.0 if not na and not nb else 0.0
    if min(na, nb) < SHINGLE:  # a very short text against a longer one: single tokens, not cached
        ta, tb = _TOKEN.findall(a.lower()), _TOKEN.findall(b.lower())
        sa, sb = frozenset(map(hash, _shingles(ta, 1))), frozenset(map(hash, _shingles(tb, 1)))
    common = len(sa & sb)
    return common / (len(sa) + len(sb) - common)


def text_similarities(text: str, others: Sequence[str]) -> list[float]:
    """`text_similarity(text, other)` for each of `others`, the same numbers, computed together: the shingles that
    each of the others shares with the text are counted by one numpy gather over all of them, instead of one set
    intersection per pair (the novelty gate compares each proposal with a few hundred programs, ~15 µs a pair in
    sets for a 50-line one), and the ratios by one numpy division."""
    mine, *theirs = _CACHE.get_many([text, *others])
    if mine.count < SHINGLE:  # empty or very short: text_similarity's own rules, pair by pair
        return [text_similarity(text, other) for other in others]
    bulk = [i for i, entry in enumerate(theirs) if entry.count >= SHINGLE]
    out = [0.0] * len(others)
    if len(bulk) < len(others):  # the others' empty or very short texts
        for i in sorted(set(range(len(others))).difference(bulk)):
            out[i] = text_similarity(text, others[i])
    if bulk:
        compared = theirs if len(bulk) == len(theirs) else [theirs[i] for i in bulk]
        (ids, *arrays), size = _CACHE.dense([mine, *compared])
        shared = np.zeros(size, dtype=bool)
        shared[ids] = True
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))  # each ≥ 1: 3 tokens, a shingle
        starts = np.cumsum(lengths) - lengths
        commons = np.add.reduceat(shared[np.concatenate(arrays)], starts, dtype=np.int64)
        ratios = (commons / (len(mine.shingles) + lengths - commons)).tolist()  # int64 / int64: exact as Python's
        if len(bulk) == len(others):
            return ratios
        for i, ratio in zip(bulk, ratios, strict=True):
            out[i] = ratio
    return out


def proposal_similarity(motivation_a: str, code_a: str, motivation_b: str, code_b: str) -> float:
    """How alike two proposals are: the code's similarity weighted CODE_WEIGHT, the motivation's the rest."""
    code = text_similarity(code_a, code_b)
    return CODE_WEIGHT * code + (1 - CODE_WEIGHT) * text_similarity(motivation_a, motivation_b)


def could_reach(code_similarity: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """Whether a proposal with this code similarity could reach the threshold with the most similar motivation
    possible; when not, its motivation need not be compared (nor encoded). Elementwise for an array."""
    return CODE_WEIGHT * code_similarity + (1 - CODE_WEIGHT) * MOTIVATION_MAX >= threshold


def most_similar(text: str, corpus: Sequence[str]) -> tuple[int, float] | None:
    """The index in `corpus` of the text most similar to `text`, with its similarity; None for an empty corpus."""
    scored = [(text_similarity(text, other), -i) for i, other in enumerate(corpus)]
    if not scored:
        return None
    best, neg_index = max(scored)
    return -neg_index, best


def parse_verdict(text: str) -> bool | None:
    """True for NOVEL, False for DUPLICATE (or NOT NOVEL), None when the answer says neither.

    A 'VERDICT: ...' line wins; else the last upper-case verdict word; else the last verdict word in any case."""
    lines = _VERDICT_LINE.findall(text)
    words = lines or _WORD.findall(text) or re.findall(r"\b(not\s+novel|novel|duplicate)\b", text, re.IGNORECASE)
    if not words:
        return None
    return " ".join(words[-1].upper().split()) == "NOVEL"


@functools.lru_cache(maxsize=1)
def _builtin_prompts() -> AnalysisPrompts:
    """The built-in templates, compiled once per process (compiling them took ~10% of the process in a run)."""
    return AnalysisPrompts()


async def judge_novelty(
    client: LLMClient,
    *,
    candidate_motivation: str,
    candidate_code: str,
    near_motivation: str,
    near_code: str,
    prompts: AnalysisPrompts | None = None,
) -> tuple[bool, LLMCall]:
    """Ask the model whether the candidate is a new idea or a duplicate of the near trial; True = novel enough.

    An unparseable answer or a failed call counts as novel: the gate never blocks on the judge's trouble."""
    values = {
        "candidate_motivation": candidate_motivation.strip(),
        "candidate_code": candidate_code.strip()[:JUDGE_CODE_CHARS],
        "near_motivation": near_motivation.strip(),
        "near_code": near_code.strip()[:JUDGE_CODE_CHARS],
    }
    messages = [{"role": "user", "content": (prompts or _builtin_prompts()).render("novelty.j2", values)}]
    try:
        text, call = await client.complete(messages, role="novelty")
    except LLMError as exc:
        return True, exc.call
    verdict = parse_verdict(text)
    return (True if verdict is None else verdict), call

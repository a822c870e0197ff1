"""The embedding-free parts of the novelty gate: token-shingle text similarity (also used to de-duplicate
lessons) and the short LLM judge that decides whether a near-duplicate proposal is novel after all."""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

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


class _ShingleCache:
    """Texts' token counts and hashed 3-token shingles, most recently used first, bounded by their total number of
    shingles: the novelty gate compares every proposal with the same few hundred evaluated programs, and tokenizing
    them again each time was most of its cost (hash collisions of 64-bit shingle hashes are negligible)."""

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[str, tuple[int, frozenset[int]]] = OrderedDict()
        self._size = 0
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[int, frozenset[int]]:
        """(number of tokens, hashed shingles: of 3 tokens, or of 1 for a text shorter than that)."""
        with self._lock:
            entry = self._entries.get(text)
            if entry is not None:
                self._entries.move_to_end(text)
                return entry
        tokens = _TOKEN.findall(text.lower())
        entry = (len(tokens), frozenset(map(hash, _shingles(tokens, SHINGLE if len(tokens) >= SHINGLE else 1))))
        with self._lock:
            if text not in self._entries:
                self._entries[text] = entry
                self._size += len(entry[1])
            while self._size > self._capacity and self._entries:
                self._size -= len(self._entries.popitem(last=False)[1][1])
        return entry


_CACHE = _ShingleCache(capacity=1_000_000)  # shingles (~60 MB at most)


def text_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' 3-token shingles (lower-cased words and symbols), in [0, 1];
    texts shorter than 3 tokens compare by single tokens. Two empty texts are identical (1.0)."""
    (na, sa), (nb, sb) = _CACHE.get(a), _CACHE.get(b)
    if not na or not nb:
        return 1.0 if not na and not nb else 0.0
    if min(na, nb) < SHINGLE:  # a very short text against a longer one: single tokens, not cached
        ta, tb = _TOKEN.findall(a.lower()), _TOKEN.findall(b.lower())
        sa, sb = frozenset(map(hash, _shingles(ta, 1))), frozenset(map(hash, _shingles(tb, 1)))
    common = len(sa & sb)
    return common / (len(sa) + len(sb) - common)


def proposal_similarity(motivation_a: str, code_a: str, motivation_b: str, code_b: str) -> float:
    """How alike two proposals are: the code's similarity weighted CODE_WEIGHT, the motivation's the rest."""
    code = text_similarity(code_a, code_b)
    return CODE_WEIGHT * code + (1 - CODE_WEIGHT) * text_similarity(motivation_a, motivation_b)


def could_reach(code_similarity: float, threshold: float) -> bool:
    """Whether a proposal with this code similarity could reach the threshold with the most similar motivation
    possible; when not, its motivation need not be compared (nor encoded)."""
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

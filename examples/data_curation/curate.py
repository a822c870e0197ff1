"""Seed data-curation pipeline: quality filters (length, letters, stop words, repetition), boilerplate trimming,
near-duplicate removal by MinHash over word shingles, then the best documents fill the token (byte) budget.

`curate(docs, budget)` returns the documents to train on as a list of selections: an index into `docs`, or
[index, weight], or [index, weight, start, end] (train on docs[index][start:end], a character span). The kept
spans' UTF-8 bytes must add up to at most `budget`; a weight (0 < w <= 10) is how often the text is sampled.
"""

from __future__ import annotations

import re
import zlib

MIN_CHARS = 150
MIN_ALPHA_FRACTION = 0.55  # letters among the characters
MIN_STOPWORD_FRACTION = 0.04  # English function words among the words
MAX_MEAN_WORD_LENGTH = 12.0
MAX_DUP_LINE_FRACTION = 0.5  # lines repeated inside the document
MAX_NON_ASCII_FRACTION = 0.05
SHINGLE = 5  # words per shingle for near-duplicate detection
NUM_HASHES = 16
DUP_THRESHOLD = 0.8  # estimated Jaccard similarity above which a document is a duplicate of a kept one
BOILERPLATE_MARKERS = 3  # a paragraph with this many marker words is page furniture, trimmed off
ALPHA_WEIGHT = 0.1  # ranking: quality = stop-word share + ALPHA_WEIGHT x letter share (the best fill the budget)
UPWEIGHT = 2.0  # sampling weight of the documents whose quality is above UPWEIGHT_ABOVE
UPWEIGHT_ABOVE = 0.5

STOPWORDS = frozenset("the of and to a in is it that for as with be on are this by an or not from at which "
                      "can if its has have was but these their when all will may one only".split())
MARKERS = ("cookie", "subscribe", "newsletter", "rights reserved", "privacy", "terms of service", "login",
           "sign up", "share this", "click", "|")
WORD = re.compile(r"[A-Za-z']+")
PRIME = (1 << 61) - 1
PERMUTATIONS = [(1 + 2 * i * 0x9E3779B1 % PRIME, 7 * i + 3) for i in range(1, NUM_HASHES + 1)]


def curate(docs: list[str], budget: int) -> list[list[float]]:
    scored = []
    for index, doc in enumerate(docs):
        start, end = _trim(doc)
        text = doc[start:end]
        quality = _quality(text)
        if quality is not None:
            scored.append((quality, index, start, end))
    scored.sort(reverse=True)
    kept, seen, used = [], [], 0
    for quality, index, start, end in scored:
        text = docs[index][start:end]
        size = len(text.encode("utf-8"))
        if used + size > budget:
            continue
        signature = _minhash(text)
        if any(_similar(signature, other) for other in seen):
            continue
        seen.append(signature)
        weight = UPWEIGHT if quality > UPWEIGHT_ABOVE else 1.0
        kept.append([index, weight, start, end])
        used += size
    return kept


def _trim(doc: str) -> tuple[int, int]:
    """The span left after dropping leading and trailing paragraphs that look like navigation or banners."""
    paragraphs = [m.span() for m in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]*)*", doc)]
    keep = [s for s in paragraphs if sum(doc[s[0]:s[1]].lower().count(m) for m in MARKERS) < BOILERPLATE_MARKERS]
    if not keep:
        return 0, 0
    return keep[0][0], keep[-1][1]


def _quality(text: str) -> float | None:
    """None when the text fails a filter, else its quality: mostly its share of stop words (prose scores high)."""
    if len(text) < MIN_CHARS:
        return None
    alpha = sum(c.isalpha() for c in text) / len(text)
    if alpha < MIN_ALPHA_FRACTION:
        return None
    if sum(not c.isascii() for c in text) / len(text) > MAX_NON_ASCII_FRACTION:
        return None
    words = WORD.findall(text)
    if not words or sum(map(len, words)) / len(words) > MAX_MEAN_WORD_LENGTH:
        return None
    stop = sum(w.lower() in STOPWORDS for w in words) / len(words)
    if stop < MIN_STOPWORD_FRACTION:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and 1 - len(set(lines)) / len(lines) > MAX_DUP_LINE_FRACTION:
        return None
    return stop + ALPHA_WEIGHT * alpha


def _minhash(text: str) -> list[int]:
    words = text.lower().split()
    shingles = {" ".join(words[i:i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}
    bases = [zlib.crc32(s.encode()) for s in shingles]  # not hash(): salted per process
    return [min((a * x + b) % PRIME for x in bases) for a, b in PERMUTATIONS]


def _similar(a: list[int], b: list[int]) -> bool:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a) >= DUP_THRESHOLD

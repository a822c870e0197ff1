"""Knowledge items: the entries of the cognition base (seeded, imported or learned), their kinds, search hits and
the text each item is indexed by."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evoforge.errors import EvoforgeError

KINDS: tuple[str, ...] = ("heuristic", "paper", "pitfall", "lesson", "note")

_TOKEN = re.compile(r"\w+", re.UNICODE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[a-z0-9][A-Z]")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have if in into is it its no not of on or so such that the their then "
    "there these they this to was were when where which while will with".split()
)


class KnowledgeError(EvoforgeError):
    """A knowledge file, item or base is wrong: the message names the file and line (or the field) and the fix."""


@dataclass(frozen=True, kw_only=True)
class KnowledgeItem:
    """One entry of the cognition base. `trigger` holds the symptoms in which it applies, in the analyzer's words;
    `effect_sign` is the sign of the measured effect a lesson reports (+1 helped, -1 hurt, 0 unknown)."""

    id: int | None = None
    kind: str = "note"
    title: str
    content: str
    trigger: str = ""
    source: str = ""
    tags: tuple[str, ...] = ()
    support: int = 1
    contradictions: int = 0
    created_at: datetime | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    effect_sign: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise KnowledgeError(f"unknown kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if not self.title.strip():
            raise KnowledgeError("a knowledge item needs a non-empty title")
        if self.effect_sign not in (-1, 0, 1):
            raise KnowledgeError(f"effect_sign must be -1, 0 or 1, not {self.effect_sign!r}")
        object.__setattr__(self, "tags", tuple(str(tag).strip() for tag in self.tags if str(tag).strip()))

    def index_text(self) -> str:
        """What lexical and dense search see: title, trigger, content and tags."""
        return "\n".join(part for part in (self.title, self.trigger, self.content, " ".join(self.tags)) if part)

    def fingerprint(self) -> str:
        """Identity for de-duplicating re-imports: the same kind, title, trigger and content is the same item."""
        key = "\x1f".join((self.kind, self.title.strip(), self.trigger.strip(), self.content.strip()))
        return hashlib.sha256(key.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the JSONL export format, which `import_paths` reads back)."""
        return {
            "id": self.id, "kind": self.kind, "title": self.title, "content": self.content, "trigger": self.trigger,
            "source": self.source, "tags": list(self.tags), "support": self.support,
            "contradictions": self.contradictions, "effect_sign": self.effect_sign,
            "created_at": self.created_at.isoformat() if self.created_at else None, "provenance": self.provenance,
        }


@dataclass(frozen=True)
class Hit:
    """One search result: the item, its fused score, and its 1-based rank in each list (None: not in that list)."""

    item: KnowledgeItem
    score: float
    lexical_rank: int | None
    dense_rank: int | None


def tokens(text: str) -> list[str]:
    """Lower-case word tokens without stopwords: the vocabulary of query sanitising, Python BM25 and Jaccard."""
    return [tok for tok in _TOKEN.findall(text.lower()) if tok not in STOPWORDS]


def code_names(text: str) -> frozenset[str]:
    """The code identifiers a text names — `MARGIN_X`, `learning_rate`, `SCALE`, `numIters` — as opposed to plain
    words: a lesson about one constant is not evidence for a lesson about another, however alike their wording."""
    return frozenset(
        word for word in _WORD.findall(text)
        if "_" in word.strip("_") or (len(word) >= 2 and word.isupper()) or _CAMEL.search(word)
    )


_RAISE = frozenset("raise raising raised increase increasing increased higher larger more".split())
_LOWER = frozenset("lower lowering lowered decrease decreasing decreased reduce reducing reduced smaller less".split())


def subject(title: str) -> frozenset[str]:
    """What a lesson's title is about, for merging: the code identifiers it names, each marked + or − when the word
    before it says which way it was changed ("raising MARGIN_X" → "+MARGIN_X"). Raising a constant and lowering it
    are different findings; neither is support for the other."""
    words = _WORD.findall(title)
    names = code_names(title)
    out = set()
    for i, word in enumerate(words):
        if word in names:
            before = words[i - 1].lower() if i else ""
            out.add(("+" if before in _RAISE else "-" if before in _LOWER else "") + word)
    return frozenset(out)


def jaccard(a: set[str], b: set[str]) -> float:
    """Token-set similarity in [0, 1]; two empty sets are not similar."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)

"""The data_curation corpus, built offline and seeded: real English text that ships with Python (the reference
documentation in `pydoc_data.topics`) cut into documents, a held-out share of them, and realistic junk made here.

This file is `hidden:` in task.yaml: the candidate sees neither the junk generators nor the held-out split.
Junk kinds: web boilerplate, boilerplate wrapped around real text, near-duplicates, spam, keyboard noise, broken
encoding (mojibake) and code/data dumps (real standard-library source, hex, base64, CSV).
"""

from __future__ import annotations

import base64
import inspect
import json
import pydoc_data.topics
import random
import re
from dataclasses import dataclass, field

DOC_MIN_CHARS = 500
DOC_MAX_CHARS = 1500
HELDOUT_FRACTION = 0.15
JUNK_KINDS = ("boilerplate", "wrapped", "near_duplicate", "spam", "keyboard", "mojibake", "code")
CODE_MODULES = ("json.decoder", "argparse", "textwrap", "fractions", "heapq", "statistics", "difflib", "shlex")


@dataclass
class Corpus:
    """What the candidate gets (`docs`, shuffled) and, for the evaluator only, each doc's kind and the held-out text."""

    docs: list[str]
    kinds: list[str]
    heldout: list[str]
    stats: dict[str, int] = field(default_factory=dict)


def clean_documents() -> list[str]:
    """The reference documentation cut into documents of about DOC_MIN_CHARS..DOC_MAX_CHARS (whole paragraphs)."""
    docs: list[str] = []
    for name in sorted(pydoc_data.topics.topics):
        current: list[str] = []
        for para in re.split(r"\n\s*\n", pydoc_data.topics.topics[name]):
            para = para.strip("\n")
            if not para.strip():
                continue
            if current and sum(map(len, current)) + len(para) > DOC_MAX_CHARS:
                docs.append("\n\n".join(current))
                current = []
            current.append(para[:DOC_MAX_CHARS])
            if sum(map(len, current)) >= DOC_MIN_CHARS:
                docs.append("\n\n".join(current))
                current = []
        if current:
            docs.append("\n\n".join(current))
    return [d for d in docs if len(d) >= 80]


def build(seed: int, *, n_clean: int | None = None, junk_ratio: float = 1.0) -> Corpus:
    """The corpus for `seed`: `n_clean` clean documents (all when None) split into train and held-out, plus junk
    worth `junk_ratio` times the clean training text in characters, shuffled together."""
    rng = random.Random(seed)
    clean = clean_documents()
    rng.shuffle(clean)
    if n_clean is not None:
        clean = clean[:n_clean]
    n_held = max(2, round(len(clean) * HELDOUT_FRACTION))
    heldout, train = clean[:n_held], clean[n_held:]
    junk: list[tuple[str, str]] = []
    target = junk_ratio * sum(map(len, train))
    makers = {"boilerplate": _boilerplate, "wrapped": _wrapped, "near_duplicate": _near_duplicate, "spam": _spam,
              "keyboard": _keyboard, "mojibake": _mojibake, "code": _code}
    size, turn = 0, 0
    while size < target:
        kind = JUNK_KINDS[turn % len(JUNK_KINDS)]
        text = makers[kind](rng, train)
        junk.append((kind, text))
        size += len(text)
        turn += 1
    pairs = [("clean", d) for d in train] + junk
    rng.shuffle(pairs)
    stats = {"clean_docs": len(train), "junk_docs": len(junk), "heldout_docs": len(heldout),
             "clean_chars": sum(map(len, train)), "junk_chars": size}
    return Corpus([t for _, t in pairs], [k for k, _ in pairs], heldout, stats)


SITES = ("ShopNow", "DailyNews24", "TechBlogz", "MegaDeals", "RecipeHub", "TravelPlus")
NAV = ("Home", "About us", "Contact", "Blog", "Careers", "Press", "FAQ", "Help Center", "Sitemap", "Login",
       "Sign up", "Privacy Policy", "Terms of Service", "Cookie settings", "Newsletter", "Shop", "Deals")
BANNERS = (
    "We use cookies to improve your experience on our site. By continuing to browse you agree to our use of "
    "cookies. Accept all | Reject all | Manage preferences",
    "Subscribe to our newsletter and never miss an update! Enter your email address below.",
    "This site is protected by reCAPTCHA and the Google Privacy Policy and Terms of Service apply.",
    "Share this article: Facebook | Twitter | LinkedIn | Email | Print",
    "You have 3 free articles left this month. Subscribe now for unlimited access.",
    "Skip to main content. Toggle navigation. Search this site.",
)


def _footer(rng: random.Random) -> str:
    site = rng.choice(SITES)
    links = " | ".join(rng.sample(NAV, rng.randint(5, 10)))
    return f"{links}\n(c) {rng.randint(2009, 2025)} {site} Inc. All rights reserved."


def _boilerplate(rng: random.Random, train: list[str]) -> str:
    parts = [" | ".join(rng.sample(NAV, rng.randint(4, 9)))]
    parts += rng.sample(BANNERS, rng.randint(2, 4))
    parts.append(_footer(rng))
    return "\n\n".join(parts)


def _wrapped(rng: random.Random, train: list[str]) -> str:
    """A real document inside a web page's navigation, banners and footer (the text itself is worth keeping)."""
    head = " | ".join(rng.sample(NAV, rng.randint(4, 9))) + "\n\n" + rng.choice(BANNERS)
    return f"{head}\n\n{rng.choice(train)}\n\n{rng.choice(BANNERS)}\n\n{_footer(rng)}"


def _near_duplicate(rng: random.Random, train: list[str]) -> str:
    """A copy of a real document with a few words changed or dropped (a mirror, a scraped re-post)."""
    words = rng.choice(train[: max(1, len(train) // 10)]).split(" ")  # a few popular documents copied many times
    for _ in range(rng.randint(0, max(1, len(words) // 25))):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            words[i] = rng.choice(("the", "a", "this", "that", "it", "is"))
        else:
            words.pop(i)
    return " ".join(words)


SPAM = ("BUY NOW", "best price", "100% FREE", "click here", "limited offer", "cheap watches", "work from home",
        "earn $$$ fast", "hot singles", "miracle diet", "casino bonus", "ACT NOW", "no prescription needed",
        "viagra", "crypto giveaway", "WIN WIN WIN", "lose 20 pounds", "best seo services")


def _spam(rng: random.Random, train: list[str]) -> str:
    lines = []
    for _ in range(rng.randint(6, 20)):
        words = [rng.choice(SPAM) for _ in range(rng.randint(3, 8))]
        host = f"{rng.choice(('best', 'cheap', 'top', 'free'))}-{rng.randint(1, 999)}"
        url = f"http://www.{host}.biz/?ref={rng.randint(10**5, 10**6)}"
        lines.append(" ".join(words) + rng.choice(("!!!", "!!", "!", " >>>")) + " " + url)
    return "\n".join(lines)


ROWS = ("qwertyuiop", "asdfghjkl;", "zxcvbnm,./", "1234567890")


def _keyboard(rng: random.Random, train: list[str]) -> str:
    out = []
    for _ in range(rng.randint(300, 1200)):
        row = rng.choice(ROWS)
        i = rng.randrange(len(row) - 1)
        out.append(row[i:i + rng.randint(1, 3)] if rng.random() < 0.9 else rng.choice(" \n"))
    return "".join(out)


MOJIBAKE = {"'": "\u00e2\u20ac\u2122", '"': "\u00e2\u20ac\u0153", "e": "\u00c3\u00a9", "a": "\u00c3\u00a0",
            "-": "\u00e2\u20ac\u201c", "o": "\u00c3\u00b6", " ": "\u00c2\u00a0", "u": "\u00c3\u00bc"}


def _mojibake(rng: random.Random, train: list[str]) -> str:
    """A real document after a broken encoding round trip: many characters replaced by mis-decoded UTF-8."""
    rate = rng.uniform(0.2, 0.6)
    chars = [MOJIBAKE[c] if c in MOJIBAKE and rng.random() < rate else c for c in rng.choice(train)]
    for _ in range(len(chars) // 40):
        chars[rng.randrange(len(chars))] = "\ufffd"
    return "".join(chars)


def _code(rng: random.Random, train: list[str]) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        source = inspect.getsource(__import__(rng.choice(CODE_MODULES), fromlist=["_"]))
        start = rng.randrange(max(1, len(source) - 1500))
        return source[start:start + rng.randint(600, 1500)]
    if kind == 1:
        return " ".join(f"{rng.getrandbits(32):08x}" for _ in range(rng.randint(60, 160)))
    if kind == 2:
        return base64.b64encode(rng.randbytes(rng.randint(400, 1000))).decode()
    rows = [",".join(str(rng.randint(0, 10**rng.randint(1, 6))) for _ in range(6)) for _ in range(rng.randint(20, 60))]
    if rng.random() < 0.5:
        return json.dumps([{"id": i, "v": r} for i, r in enumerate(rows)])
    return "id,a,b,c,d,e\n" + "\n".join(rows)

"""Condenses what an evaluation printed and streamed into prompt-sized text: log head, tail and error lines
under a character budget, and a few numbers per telemetry curve (first, last, best, recent trend)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

CHARS_PER_TOKEN = 4  # rough size of a token in English and code; budgets are given in characters
MAX_LINE_CHARS = 300  # one log line shown at most this long (a 1 MB single-line log stays readable)
HEAD_SHARE, ERROR_SHARE = 0.25, 0.3  # of the budget; the tail gets the rest
ERROR_PATTERN = re.compile(
    r"error|exception|traceback|fatal|failed|failure|abort|killed|segmentation|out of memory|\bnan\b|\binf\b"
    r"|warning|assert",
    re.IGNORECASE,
)


def tokens_to_chars(tokens: int) -> int:
    """A character budget for `tokens` tokens."""
    return max(0, tokens) * CHARS_PER_TOKEN


def _clip_line(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def _take(lines: Sequence[tuple[int, str]], budget: int) -> list[tuple[int, str]]:
    """The leading `lines` whose text (one newline each) fits in `budget` characters."""
    taken: list[tuple[int, str]] = []
    used = 0
    for number, text in lines:
        if used + len(text) + 1 > budget:
            break
        taken.append((number, text))
        used += len(text) + 1
    return taken


def _error_lines(lines: Sequence[str], skip: set[int], budget: int) -> list[tuple[int, str]]:
    """Distinct lines matching ERROR_PATTERN (first occurrence of each), outside `skip`, within `budget`."""
    seen: set[str] = set()
    hits: list[tuple[int, str]] = []
    for number, text in enumerate(lines):
        if number in skip or not ERROR_PATTERN.search(text):
            continue
        key = re.sub(r"\d+", "#", text.strip())  # "step 10: nan" and "step 11: nan" count once
        if key in seen:
            continue
        seen.add(key)
        hits.append((number, f"[line {number + 1}] {text}"))
    if sum(len(t) + 1 for _, t in hits) <= budget:
        return hits
    half = _take(hits, budget // 2)  # the first errors show the cause, the last ones the end state
    rest = _take(list(reversed(hits[len(half) :])), budget - sum(len(t) + 1 for _, t in half))
    return half + list(reversed(rest))


def condense_log(text: str, budget: int = 6000) -> str:
    """`text` itself if it fits in `budget` characters; else its head, its distinct error lines and its tail,
    in order, with markers counting what was left out. The result never exceeds `budget` characters."""
    if len(text) <= budget:
        return text
    lines = [_clip_line(line) for line in text.splitlines()]
    numbered = list(enumerate(lines))
    head = _take(numbered, int(budget * HEAD_SHARE))
    tail_budget = budget - int(budget * HEAD_SHARE) - int(budget * ERROR_SHARE)
    tail = list(reversed(_take(list(reversed(numbered[len(head) :])), tail_budget)))
    shown = {n for n, _ in head} | {n for n, _ in tail}
    errors = _error_lines(lines, shown, int(budget * ERROR_SHARE))
    picked = sorted(head + errors + tail)
    out: list[str] = []
    previous = -1
    for number, line in picked:
        if number > previous + 1:
            out.append(f"[… {number - previous - 1} lines omitted …]")
        out.append(line)
        previous = number
    if previous < len(lines) - 1:
        out.append(f"[… {len(lines) - 1 - previous} lines omitted …]")
    result = "\n".join(out)
    return result if len(result) <= budget else result[: budget - 1] + "…"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def summarize_curve(name: str, points: Sequence[tuple[int, float]]) -> str:
    """One line on a metric's curve: points, first and last value, min and max with their steps, the change
    over the last fifth (a plateau when under 1% of the curve's range), and how many values were not finite."""
    finite = [(s, v) for s, v in sorted(points) if math.isfinite(v)]
    bad = len(points) - len(finite)
    if not finite:
        return f"{name}: {len(points)} points, none finite"
    (s0, v0), (s1, v1) = finite[0], finite[-1]
    lo = min(finite, key=lambda p: p[1])
    hi = max(finite, key=lambda p: p[1])
    parts = [f"{name}: {len(points)} points, steps {s0}→{s1}", f"first {_fmt(v0)}, last {_fmt(v1)}"]
    parts.append(f"min {_fmt(lo[1])} @ step {lo[0]}, max {_fmt(hi[1])} @ step {hi[0]}")
    if len(finite) >= 5:
        recent = finite[-max(2, len(finite) // 5) :]
        change = recent[-1][1] - recent[0][1]
        span = hi[1] - lo[1]
        trend = "flat" if span == 0 or abs(change) < 0.01 * span else ("rising" if change > 0 else "falling")
        parts.append(f"last {len(recent)} points {trend} ({change:+.4g})")
    if bad:
        parts.append(f"{bad} non-finite values (NaN/inf)")
    return "; ".join(parts)


def summarize_curves(curves: Mapping[str, Sequence[tuple[int, float]]], budget: int = 1500) -> str:
    """One line per curve (sorted by name), cut to `budget` characters; '' when there are none."""
    lines = [summarize_curve(name, points) for name, points in sorted(curves.items()) if points]
    text = "\n".join(lines)
    return text if len(text) <= budget else text[: budget - 1] + "…"

"""The research review: from the best trials, the most supported lessons and the failure classes, a short
research agenda (directions to pursue, dead ends to avoid) for the researcher's prompt; by the LLM when one is
configured, else deterministic from the same data."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.llm.client import LLMClient, LLMError
from evoforge.models import LLMCall, Trial
from evoforge.templating import clip, score_text

MAX_ITEMS = 6  # directions and dead ends, each
MAX_BEST = 5
MAX_LESSONS = 12
NEGATIVE = re.compile(
    r"\b(worsened|worse|hurt|hurts|led to|failed|fails|crash\w*|timed out|timeout|stopped early|pruned|slower"
    r"|regress\w*|degrad\w*|avoid|pitfall)\b",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)")


@dataclass(frozen=True)
class Agenda:
    """A research agenda: Markdown `text`, its `directions` and `dead_ends`, the LLM calls that wrote it."""

    text: str
    directions: list[str] = field(default_factory=list)
    dead_ends: list[str] = field(default_factory=list)
    llm_calls: tuple[LLMCall, ...] = ()
    source: str = "offline"  # "llm" or "offline"


def render_agenda(directions: Sequence[str], dead_ends: Sequence[str]) -> str:
    """The agenda as Markdown: two headed bullet lists."""
    def bullets(items: Sequence[str]) -> str:
        return "\n".join(f"- {item}" for item in items) or "- (none yet)"

    return f"## Directions\n{bullets(directions)}\n\n## Dead ends\n{bullets(dead_ends)}"


def offline_agenda(
    best: Sequence[Trial], lessons: Sequence[tuple[str, str, int]], failure_classes: dict[str, int]
) -> Agenda:
    """The deterministic agenda: build on the best trials and the supported positive lessons; avoid what the
    negative lessons (by wording) and the most frequent failure classes point at."""
    directions = [
        f"build on #{t.id} '{t.name or 'unnamed'}' (score {score_text(t.score)})" for t in best[:3] if t.scored
    ]
    dead_ends: list[str] = []
    for title, _content, support in sorted(lessons, key=lambda x: -x[2]):
        seen = f" (seen {support}×)" if support > 1 else ""
        if NEGATIVE.search(title):
            dead_ends.append(f"avoid: {clip(title, 200)}{seen}")
        else:
            directions.append(f"{clip(title, 200)}{seen}")
    for cls, count in sorted(failure_classes.items(), key=lambda x: (-x[1], x[0])):
        dead_ends.append(f"changes that cause {cls} ({count} trial{'s' * (count != 1)} so far)")
    directions, dead_ends = directions[:MAX_ITEMS], dead_ends[:MAX_ITEMS]
    return Agenda(render_agenda(directions, dead_ends), directions, dead_ends)


def parse_agenda(text: str) -> tuple[list[str], list[str]]:
    """The bullets under the 'Directions' and 'Dead ends' (or 'Avoid') headings of a Markdown answer."""
    directions: list[str] = []
    dead_ends: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        low = line.strip().lower().strip("#*: ")
        if line.lstrip().startswith("#") or (low and not _BULLET.match(line) and len(low) < 40):
            if "dead end" in low or "avoid" in low:
                current = dead_ends
                continue
            if "direction" in low:
                current = directions
                continue
        bullet = _BULLET.match(line)
        if bullet and current is not None and len(current) < MAX_ITEMS:
            current.append(clip(bullet.group(1).strip(), 300))
    return directions, dead_ends


async def write_agenda(
    *,
    client: LLMClient | None,
    problem: str,
    best: Sequence[Trial],
    lessons: Sequence[tuple[str, str, int]],
    failure_classes: dict[str, int],
    previous: str | None,
    prompts: AnalysisPrompts | None = None,
) -> Agenda:
    """A new research agenda. `lessons`: (title, content, support), most supported first; `previous`: the last
    agenda, which the model revises. Without a client, or when the model's answer has no bullets under the two
    headings (or the call fails), the deterministic agenda stands, with the calls made attached."""
    fallback = offline_agenda(best, lessons, failure_classes)
    if client is None:
        return fallback
    values = {
        "problem": clip(problem, 2000),
        "best": [t for t in best if t.scored][:MAX_BEST],
        "lessons": list(lessons)[:MAX_LESSONS],
        "failure_classes": sorted(failure_classes.items(), key=lambda x: (-x[1], x[0])),
        "previous": (previous or "").strip(),
        "max_items": MAX_ITEMS,
    }
    messages = [{"role": "user", "content": (prompts or AnalysisPrompts()).render("review.j2", values)}]
    try:
        text, call = await client.complete(messages, role="review")
    except LLMError as exc:
        return Agenda(fallback.text, fallback.directions, fallback.dead_ends, (exc.call,), "offline")
    directions, dead_ends = parse_agenda(text)
    if not directions and not dead_ends:
        return Agenda(fallback.text, fallback.directions, fallback.dead_ends, (call,), "offline")
    return Agenda(render_agenda(directions, dead_ends), directions, dead_ends, (call,), "llm")

"""Reads a model's answer: NAME and MOTIVATION lines, SEARCH/REPLACE edits or a full program in a code fence.

Parsing is lenient about what models do (markdown bold, case, CRLF, fences inside edit blocks, trailing
spaces) and reports what it could not read in `problems` instead of raising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evoforge.research.edits import Edit

NAME_RE = re.compile(r"^[\s#>*_\-]*(?:name|title)[\s*_]*:[\s*_]*(.*?)[\s*_]*$", re.IGNORECASE)
MOTIVATION_RE = re.compile(r"^[\s#>*_\-]*(?:motivation|hypothesis)[\s*_]*:[\s*_]*(.*?)\s*$", re.IGNORECASE)
SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$", re.IGNORECASE)
DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$", re.IGNORECASE)
FENCE_RE = re.compile(r"^\s*(```|~~~)")
MAX_NAME = 80


@dataclass
class Answer:
    """What one answer said; `code` is a full program (None when none was given)."""

    name: str = ""
    motivation: str = ""
    edits: list[Edit] = field(default_factory=list)
    code: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def has_name(self) -> bool:
        return bool(self.name)


def parse_answer(text: str) -> Answer:
    """Parse a model's answer; never raises."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    answer = Answer()
    answer.edits, answer.problems = parse_edits(lines)
    if not answer.edits:
        answer.code = largest_code_block(lines)
    prose = prose_lines(lines)
    if answer.edits and not _field(prose, NAME_RE, multiline=False):
        prose = prose_lines(lines, skip_fenced=False)  # a whole answer wrapped in one fence
    answer.name = _clean_name(_field(prose, NAME_RE, multiline=False))
    answer.motivation = _field(prose, MOTIVATION_RE, multiline=True)
    return answer


def derive_name(motivation: str, fallback: str = "llm proposal") -> str:
    """A short name from the first words of the motivation, for answers that gave none."""
    words = re.findall(r"[A-Za-z0-9][\w\-]*", motivation)[:6]
    return _clean_name(" ".join(words)) or fallback


def _clean_name(name: str) -> str:
    name = name.strip().strip("`'\"*_ ").strip()
    return name[: MAX_NAME - 1] + "…" if len(name) > MAX_NAME else name


def _field(lines: list[str], pattern: re.Pattern[str], *, multiline: bool) -> str:
    """The value after the first line matching `pattern`; with `multiline`, also the lines up to a blank line,
    another field, an edit block or a code fence."""
    for i, line in enumerate(lines):
        match = pattern.match(line)
        if not match:
            continue
        parts = [match.group(1).strip()]
        if multiline:
            for nxt in lines[i + 1 :]:
                if not nxt.strip() and any(parts):
                    break
                if NAME_RE.match(nxt) or SEARCH_RE.match(nxt) or FENCE_RE.match(nxt):
                    break
                if nxt.strip():
                    parts.append(nxt.strip())
        return " ".join(p for p in parts if p)
    return ""


def prose_lines(lines: list[str], *, skip_fenced: bool = True) -> list[str]:
    """Lines outside edit blocks and (with `skip_fenced`) code fences: where NAME and MOTIVATION may be."""
    prose: list[str] = []
    in_fence = in_edit = False
    for line in lines:
        if SEARCH_RE.match(line):
            in_edit = True
        elif REPLACE_RE.match(line):
            in_edit = False
        elif FENCE_RE.match(line) and not in_edit:
            in_fence = not in_fence
            prose.append("")  # a fence ends a multi-line field like a blank line does
        elif not in_edit and not (in_fence and skip_fenced):
            prose.append(line)
    return prose


def _strip_fences(section: list[str]) -> list[str]:
    """A SEARCH or REPLACE section without code-fence lines at its ends."""
    while section and FENCE_RE.match(section[0]):
        section = section[1:]
    while section and FENCE_RE.match(section[-1]):
        section = section[:-1]
    return section


def parse_edits(lines: list[str]) -> tuple[list[Edit], list[str]]:
    """Every SEARCH/REPLACE block in `lines`, and a note for each block that is not closed."""
    edits: list[Edit] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        if not SEARCH_RE.match(lines[i]):
            i += 1
            continue
        number = len(edits) + len(problems) + 1
        divider = next((j for j in range(i + 1, len(lines)) if DIVIDER_RE.match(lines[j])), None)
        end = None
        if divider is not None:
            end = next((j for j in range(divider + 1, len(lines)) if REPLACE_RE.match(lines[j])), None)
        if divider is None or end is None:
            problems.append(f"edit block {number} is not closed: it needs ======= and >>>>>>> REPLACE lines")
            break
        search = _strip_fences([ln.rstrip() for ln in lines[i + 1 : divider]])
        replace = _strip_fences([ln.rstrip() for ln in lines[divider + 1 : end]])
        edits.append(Edit("\n".join(search), "\n".join(replace)))
        i = end + 1
    return edits, problems


def largest_code_block(lines: list[str]) -> str | None:
    """The longest fenced code block holding no edit markers, without its fences (None if there is none)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if FENCE_RE.match(line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    if current:  # an unclosed last fence: models sometimes stop before the closing ```
        blocks.append(current)
    usable = [b for b in blocks if b and not any(SEARCH_RE.match(ln) or REPLACE_RE.match(ln) for ln in b)]
    if not usable:
        return None
    best = max(usable, key=lambda b: sum(len(ln) for ln in b))
    return "\n".join(best).strip("\n") + "\n"

"""Apply SEARCH/REPLACE edits to a program (exact, then whitespace-tolerant matching); make unified diffs."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CLOSEST_CANDIDATES = 8


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE block: the lines to find and what to put in their place (no trailing newline)."""

    search: str
    replace: str


class EditError(ValueError):
    """An edit that cannot be applied; the message names the block, `closest` is the nearest region."""

    def __init__(self, message: str, closest: str = "") -> None:
        super().__init__(message)
        self.closest = closest


def unified_diff(old: str, new: str, name: str) -> str:
    """A unified diff from `old` to `new`, labelled a/`name` and b/`name`."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
    )
    tail = "\n\\ No newline at end of file\n"
    return "".join(line if line.endswith("\n") else line + tail for line in lines)


def apply_edits(code: str, edits: Sequence[Edit]) -> str:
    """`code` with the edits applied in order; EditError for the first that matches nowhere or twice."""
    for number, edit in enumerate(edits, 1):
        code = apply_edit(code, edit, f"edit {number} of {len(edits)}")
    return code


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _trim_blank(lines: list[str]) -> tuple[list[str], int, int]:
    """Lines without leading/trailing blank lines, and how many were dropped at each end."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end], start, len(lines) - end


Reindent = Callable[[str], str]


def _same(line: str) -> str:
    return line


def _window_match(window: list[str], search: list[str], mode: str) -> Reindent | None:
    """A re-indent function when `window` matches `search` under `mode`, else None."""
    if mode == "exact":
        return _same if window == search else None
    if mode == "rstrip":
        ok = all(a.rstrip() == b.rstrip() for a, b in zip(window, search, strict=True))
        return _same if ok else None
    first = next(i for i, line in enumerate(search) if line.strip())
    have, want = _indent(window[first]), _indent(search[first])
    reindent = _shift(want, have)
    for a, b in zip(window, search, strict=True):
        if not b.strip():
            if a.strip():
                return None
        elif a.rstrip() != reindent(b).rstrip():
            return None
    return reindent


def _shift(want: str, have: str) -> Reindent:
    """Maps a line indented like the SEARCH block (prefix `want`) to the program's indentation (`have`)."""

    def reindent(line: str) -> str:
        if not line.strip():
            return line
        if line.startswith(want):
            return have + line[len(want) :]
        delta = len(have) - len(want)  # a line less indented than the block's first line
        if delta >= 0:
            return have[:delta] + line
        return line[min(-delta, len(_indent(line))) :]

    return reindent


def _find(lines: list[str], search: list[str]) -> tuple[list[int], Reindent]:
    """Start indexes where `search` matches, using the strictest mode that matches at all."""
    size = len(search)
    for mode in ("exact", "rstrip", "indent"):
        hits: list[tuple[int, Reindent]] = []
        for start in range(len(lines) - size + 1):
            if mode != "exact" and lines[start].strip() != search[0].strip():
                continue
            reindent = _window_match(lines[start : start + size], search, mode)
            if reindent is not None:
                hits.append((start, reindent))
        if hits:
            return [h[0] for h in hits], hits[0][1]
    return [], _same


def apply_edit(code: str, edit: Edit, label: str = "edit") -> str:
    """`code` with one edit applied; EditError when its SEARCH block matches nowhere or more than once."""
    search_all = edit.search.replace("\r\n", "\n").split("\n")
    search, lead, trail = _trim_blank(search_all)
    if not search:
        raise EditError(f"{label}: the SEARCH section is empty; copy the lines to replace into it")
    replace = edit.replace.replace("\r\n", "\n").split("\n") if edit.replace else []
    replace = _drop_matching_blanks(replace, lead, trail)
    lines = code.split("\n")
    starts, reindent = _find(lines, search)
    if not starts:  # last resort: the SEARCH text as an exact substring (a model may quote part of a line)
        text = "\n".join(search)
        hits = _occurrences(code, text)
        if len(hits) == 1:
            return code[: hits[0]] + "\n".join(replace) + code[hits[0] + len(text) :]
        starts = [code.count("\n", 0, hit) for hit in hits]
    if not starts:
        closest = closest_region(lines, search)
        raise EditError(
            f"{label}: SEARCH block starting {search[0].strip()!r} matches nothing in the program; "
            f"the closest region is:\n{closest}",
            closest,
        )
    if len(starts) > 1:
        where = ", ".join(str(s + 1) for s in sorted(set(starts)))
        raise EditError(
            f"{label}: SEARCH block starting {search[0].strip()!r} matches {len(starts)} places "
            f"(lines {where}); include more surrounding lines so it matches exactly once"
        )
    start = starts[0]
    return "\n".join(lines[:start] + [reindent(line) for line in replace] + lines[start + len(search) :])


def _occurrences(code: str, text: str) -> list[int]:
    """Offsets of the non-overlapping occurrences of `text` in `code`."""
    hits: list[int] = []
    at = code.find(text)
    while at >= 0:
        hits.append(at)
        at = code.find(text, at + len(text))
    return hits


def _drop_matching_blanks(replace: list[str], lead: int, trail: int) -> list[str]:
    """Drops as many blank lines from the ends of REPLACE as were dropped from the ends of SEARCH."""
    while lead and replace and not replace[0].strip():
        replace, lead = replace[1:], lead - 1
    while trail and replace and not replace[-1].strip():
        replace, trail = replace[:-1], trail - 1
    return replace


def closest_region(lines: list[str], search: list[str]) -> str:
    """The program region most similar to `search` (difflib), with line numbers."""
    size = min(len(search), len(lines))
    if size == 0:
        return "(the program is empty)"
    target = "\n".join(s.strip() for s in search)
    scored: list[tuple[float, int]] = []
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for start in range(len(lines) - size + 1):
        matcher.set_seq1("\n".join(s.strip() for s in lines[start : start + size]))
        scored.append((matcher.quick_ratio(), start))
    best_ratio, best = -1.0, 0
    for _, start in sorted(scored, reverse=True)[:CLOSEST_CANDIDATES]:
        matcher.set_seq1("\n".join(s.strip() for s in lines[start : start + size]))
        ratio = matcher.ratio()
        if ratio > best_ratio or (ratio == best_ratio and start < best):
            best_ratio, best = ratio, start
    width = len(str(best + size))
    return "\n".join(f"{n + 1:>{width}}| {lines[n]}" for n in range(best, best + size))

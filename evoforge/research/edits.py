"""Apply SEARCH/REPLACE edits to a program (exact, then whitespace-tolerant matching), confined to its
EVOLVE-BLOCK regions when it marks some; choose the patch type of a proposal; make unified diffs.

A program marks the regions the researcher may change with comment lines holding `EVOLVE-BLOCK-START` and
`EVOLVE-BLOCK-END` in its language's comment syntax (`#` for .py/.sh/.yaml, `//` for .js/.ts/.c/.cpp/.go/.rs/.java,
`--` for .sql/.lua; any of them when the file name is not known). An unclosed START runs to the end of the file.
"""

from __future__ import annotations

import difflib
import functools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evoforge.config import PatchWeights

CLOSEST_CANDIDATES = 8
PATCH_TYPES = ("diff", "full", "crossover")
COMMENT_PREFIXES = {
    **dict.fromkeys((".py", ".sh", ".bash", ".yaml", ".yml", ".toml", ".r", ".jl"), "#"),
    **dict.fromkeys((".js", ".ts", ".c", ".h", ".cc", ".cpp", ".hpp", ".cu", ".go", ".rs", ".java", ".kt"), "//"),
    **dict.fromkeys((".sql", ".lua", ".hs"), "--"),
}
Region = tuple[int, int]  # editable lines, 0-based, half-open (between a START marker and its END marker)


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


def apply_edits(code: str, edits: Sequence[Edit], *, blocks: bool | None = None, filename: str | None = None) -> str:
    """`code` with the edits applied in order; EditError for the first that matches nowhere or twice.

    `blocks`: confine the edits to the EVOLVE-BLOCK regions (None: when the program marks any; False: never).
    `filename` picks the comment syntax of the markers (None: any known syntax)."""
    original = code
    enforce = blocks is not False and bool(find_blocks(code.split("\n"), filename))
    for number, edit in enumerate(edits, 1):
        regions = editable_regions(code.split("\n"), filename) if enforce else None
        code = apply_edit(code, edit, f"edit {number} of {len(edits)}", regions)
    if enforce:
        check_blocks(original, code, filename=filename)
    return code


def choose_patch_type(weights: PatchWeights, rng: random.Random, *, can_crossover: bool = True) -> str:
    """"diff", "full" or "crossover", drawn with the configured weights (crossover left out when there is no
    second program to combine; "diff" when nothing else is left)."""
    options = [(kind, float(getattr(weights, kind))) for kind in PATCH_TYPES if can_crossover or kind != "crossover"]
    options = [(kind, weight) for kind, weight in options if weight > 0]
    if not options:
        return "diff"
    return rng.choices([kind for kind, _ in options], weights=[weight for _, weight in options], k=1)[0]


@functools.lru_cache(maxsize=64)  # asked for each prompt and each proposal: one program name per run
def _marker_re(filename: str | None) -> re.Pattern[str]:
    prefix = COMMENT_PREFIXES.get(Path(filename).suffix.lower()) if filename else None
    syntax = re.escape(prefix) if prefix else "#|//|--"
    return re.compile(rf"^\s*(?:{syntax})\s*EVOLVE-BLOCK-(START|END)\b")


def find_blocks(lines: Sequence[str], filename: str | None = None) -> list[Region]:
    """(START line, END line) index pairs of the marked blocks; an unclosed START ends at len(lines)."""
    marker = _marker_re(filename)
    found: list[Region] = []
    start: int | None = None
    for i, line in enumerate(lines):
        match = marker.match(line)
        if match is None:
            continue
        if match.group(1) == "START" and start is None:
            start = i
        elif match.group(1) == "END" and start is not None:
            found.append((start, i))
            start = None
    if start is not None:
        found.append((start, len(lines)))
    return found


def editable_regions(lines: Sequence[str], filename: str | None = None) -> list[Region]:
    """The lines inside the blocks, marker lines excluded."""
    return [(start + 1, end) for start, end in find_blocks(lines, filename)]


def describe_regions(regions: Sequence[Region]) -> str:
    """Regions as 1-based line ranges, e.g. 'lines 4-9 and 15-20'."""
    parts = [f"{lo + 1}-{hi}" if hi > lo + 1 else str(lo + 1) for lo, hi in regions if hi > lo]
    if not parts:
        return "no lines (the blocks are empty)"
    return "line " + parts[0] if len(parts) == 1 and "-" not in parts[0] else "lines " + " and ".join(parts)


def check_blocks(old: str, new: str, *, filename: str | None = None) -> None:
    """EditError naming the first line outside the EVOLVE-BLOCK regions of `old` that `new` changes (markers
    included); nothing when `old` marks no block. Use it on full rewrites; `apply_edits` calls it itself."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    old_blocks = find_blocks(old_lines, filename)
    if not old_blocks:
        return
    where = describe_regions(editable_regions(old_lines, filename))
    new_blocks = find_blocks(new_lines, filename)
    if len(new_blocks) != len(old_blocks):
        marks = ", ".join(str(i + 1) for block in old_blocks for i in block if i < len(old_lines))
        raise EditError(
            f"the EVOLVE-BLOCK-START/END marker lines (lines {marks} of the current program) were removed or "
            f"added; keep them as they are and change only {where}"
        )
    pairs = zip(_frozen(old_lines, old_blocks), _frozen(new_lines, new_blocks), strict=True)
    for (first, old_part), (_, new_part) in pairs:
        changed = _first_difference(old_part, new_part)
        if changed is None:
            continue
        line = first + changed
        if changed < len(old_part):
            text = old_part[changed].strip()
            what = f"line {line + 1} ({text!r})" if text else f"line {line + 1} (a blank line)"
        else:
            what = f"the text after line {line}"
        raise EditError(
            f"{what} is outside the EVOLVE-BLOCK regions and may not change; change only {where} "
            "(between the EVOLVE-BLOCK-START and EVOLVE-BLOCK-END lines)"
        )


def _frozen(lines: list[str], blocks: Sequence[Region]) -> list[tuple[int, list[str]]]:
    """The segments outside the blocks' interiors (marker lines included), each with its first line index."""
    segments: list[tuple[int, list[str]]] = []
    at = 0
    for start, end in blocks:
        segments.append((at, lines[at : start + 1]))
        at = end
    tail = lines[at:]
    while tail and not tail[-1].strip():  # a trailing newline more or less is no change
        tail = tail[:-1]
    segments.append((at, tail))
    return segments


def _first_difference(old: list[str], new: list[str]) -> int | None:
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a.rstrip() != b.rstrip():
            return i
    return None if len(old) == len(new) else min(len(old), len(new))


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


def _inside(start: int, size: int, regions: Sequence[Region] | None) -> bool:
    return regions is None or any(lo <= start and start + size <= hi for lo, hi in regions)


def _find(
    lines: list[str], search: list[str], regions: Sequence[Region] | None = None
) -> tuple[list[int], Reindent, list[int]]:
    """Start indexes where `search` matches inside `regions` (None: anywhere), using the strictest mode that
    matches at all, and the start indexes of matches outside the regions."""
    size = len(search)
    outside: list[int] = []
    for mode in ("exact", "rstrip", "indent"):
        hits: list[tuple[int, Reindent]] = []
        for start in range(len(lines) - size + 1):
            if mode != "exact" and lines[start].strip() != search[0].strip():
                continue
            reindent = _window_match(lines[start : start + size], search, mode)
            if reindent is None:
                continue
            if _inside(start, size, regions):
                hits.append((start, reindent))
            elif start not in outside:
                outside.append(start)
        if hits:
            return [h[0] for h in hits], hits[0][1], outside
    return [], _same, outside


def apply_edit(code: str, edit: Edit, label: str = "edit", regions: Sequence[Region] | None = None) -> str:
    """`code` with one edit applied; EditError when its SEARCH block matches nowhere or more than once, or
    (with `regions`, the editable line ranges) only outside the regions."""
    search_all = edit.search.replace("\r\n", "\n").split("\n")
    search, lead, trail = _trim_blank(search_all)
    if not search:
        raise EditError(f"{label}: the SEARCH section is empty; copy the lines to replace into it")
    replace = edit.replace.replace("\r\n", "\n").split("\n") if edit.replace else []
    replace = _drop_matching_blanks(replace, lead, trail)
    lines = code.split("\n")
    starts, reindent, outside = _find(lines, search, regions)
    if not starts and not outside:  # last resort: the SEARCH text as an exact substring (part of a line)
        text = "\n".join(search)
        hits = _occurrences(code, text)
        inside = [h for h in hits if _inside(code.count("\n", 0, h), text.count("\n") + 1, regions)]
        outside = [code.count("\n", 0, h) for h in hits if h not in inside]
        if len(inside) == 1:
            return code[: inside[0]] + "\n".join(replace) + code[inside[0] + len(text) :]
        starts = [code.count("\n", 0, hit) for hit in inside]
    if not starts and outside and regions is not None:
        span = len(search) - 1
        where = ", ".join(f"{s + 1}-{s + 1 + span}" if span else str(s + 1) for s in outside)
        raise EditError(
            f"{label}: SEARCH block starting {search[0].strip()!r} matches line{'s' if span else ''} {where}, "
            f"which reach{'es' if not span and len(outside) == 1 else ''} outside the EVOLVE-BLOCK regions; "
            f"change only {describe_regions(regions)}"
        )
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

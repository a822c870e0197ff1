"""Reading program text, shared by the researcher and the analyzer: the numeric literals of a Python program and the
unified diff between two versions of one."""

from __future__ import annotations

import difflib
import io
import keyword
import tokenize
from dataclasses import dataclass


def unified_diff(old: str, new: str, name: str) -> str:
    """A unified diff from `old` to `new`, labelled a/`name` and b/`name`."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
    )
    tail = "\n\\ No newline at end of file\n"
    return "".join(line if line.endswith("\n") else line + tail for line in lines)


@dataclass(frozen=True)
class Literal:
    """A numeric literal of the program: its character offsets, text, value and a nearby name."""

    start: int
    end: int
    text: str
    value: float
    is_float: bool
    label: str
    constant: bool = False  # in a top-level `UPPER_CASE = ...` assignment


def find_literals(code: str) -> list[Literal]:
    """The decimal int and float literals of `code`; raises tokenize.TokenError/SyntaxError on bad Python."""
    offsets = [0]
    for line in io.StringIO(code):
        offsets.append(offsets[-1] + len(line))
    found: list[Literal] = []
    label, label_row = "", 0
    head: list[tokenize.TokenInfo] = []  # the first two tokens of the current logical line
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            head = [] if tok.type == tokenize.NEWLINE or len(head) == 0 else head
        elif tok.type not in (tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT) and len(head) < 2:
            head.append(tok)
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            label, label_row = tok.string, tok.start[0]
        if tok.type != tokenize.NUMBER:
            continue
        text = tok.string
        if text[-1] in "jJ" or text[:2].lower() in ("0x", "0o", "0b"):
            continue
        is_float = any(c in text for c in ".eE")
        value = float(text.replace("_", ""))
        name = label if label_row == tok.start[0] and label else f"line {tok.start[0]}"
        start = offsets[tok.start[0] - 1] + tok.start[1]
        constant = _is_constant_assignment(head)
        found.append(Literal(start, start + len(text), text, value, is_float, name, constant))
    return found


def _is_constant_assignment(head: list[tokenize.TokenInfo]) -> bool:
    if len(head) < 2 or head[0].type != tokenize.NAME or head[0].start[1] != 0:
        return False
    name = head[0].string
    return name.isupper() and head[1].string in ("=", ":")

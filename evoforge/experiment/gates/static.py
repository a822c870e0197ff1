"""Static gate, before anything runs: the candidate must parse (Python: `ast`), define the task's entry points and
stay under the size limit; and the program's fingerprint, which finds exact duplicates of evaluated programs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evoforge.models import GateDecision

if TYPE_CHECKING:
    from evoforge.task.loader import Task

GATE = "static"
PARSED_CACHE = 64  # programs whose parse is kept (a few trials in flight, each asking up to three times)


def _reject(check: str, reason: str, **evidence: object) -> GateDecision:
    return GateDecision(gate=GATE, stage=None, action="reject", reason=reason, evidence={"check": check, **evidence})


def _is_python(program_name: str) -> bool:
    return program_name.endswith((".py", ".pyw"))


def check_static(code: str, task: Task) -> GateDecision | None:
    """A "reject" decision (evidence["check"]: "size", "syntax" or "entry_point") or None when the code passes.

    Python programs are parsed; entry points must be top-level definitions or assignments. Other files only
    need each entry point to appear as a whole word.
    """
    cfg = task.config.gates.static
    if not cfg.enabled:
        return None
    size = len(code.encode("utf-8", errors="replace"))
    if size > cfg.max_bytes:
        return _reject("size", f"program is {size} bytes, over the limit gates.static.max_bytes={cfg.max_bytes}",
                       value=size, reference=cfg.max_bytes)
    name = task.program_name
    if not _is_python(name):
        missing = [e for e in cfg.entry_points if not re.search(rf"\b{re.escape(e)}\b", code)]
        return _missing(missing, name)
    parsed = _parsed(code)
    if parsed.names is None:
        if not parsed.syntax:  # null bytes
            return _reject("syntax", f"{name}: cannot be parsed: {parsed.error}")
        return _reject("syntax", f"{name}: syntax error at line {parsed.line}: {parsed.error}", line=parsed.line)
    return _missing([e for e in cfg.entry_points if e not in parsed.names], name)


def _missing(missing: list[str], program_name: str) -> GateDecision | None:
    if not missing:
        return None
    names = ", ".join(missing)
    return _reject("entry_point", f"{program_name} does not define {names} (required by gates.static.entry_points)",
                   missing=missing)


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def program_fingerprint(code: str, program_name: str) -> str:
    """sha256 of the normalised program: for Python the AST without docstrings (so comments, blank lines,
    formatting and docstrings do not count); for other files (or unparseable Python) whitespace-collapsed text."""
    if _is_python(program_name):
        fingerprint = _parsed(code).fingerprint
        if fingerprint is not None:
            return fingerprint
    return _text_fingerprint(code)


def _text_fingerprint(code: str) -> str:
    collapsed = " ".join(code.split())
    return hashlib.sha256(b"text:" + collapsed.encode("utf-8", errors="replace")).hexdigest()


@dataclass(frozen=True)
class _Parsed:
    """What the static gate and the fingerprint need of one Python program, from a single parse."""

    names: frozenset[str] | None  # its top-level names; None: it does not parse
    fingerprint: str | None  # sha256 of its AST without docstrings; None: it does not parse
    error: str = ""  # why it does not parse
    line: int | None = None  # where
    syntax: bool = True  # False: it cannot be parsed at all (null bytes)


@functools.lru_cache(maxsize=PARSED_CACHE)
def _parsed(code: str) -> _Parsed:
    """Parse `code` once for both the static gate and the fingerprint: a trial asks for its fingerprint when it is
    proposed and for its static check when its first stage starts ahead and again when it is evaluated. A result
    depends on the text alone (keyed by it), so nothing invalidates an entry; the least recently used go first."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return _Parsed(None, None, exc.msg, exc.lineno)
    except ValueError as exc:  # null bytes
        return _Parsed(None, None, str(exc), syntax=False)
    if sys.version_info >= (3, 13):  # ast.dump's own text there (see `_dump`)
        names = frozenset(_top_level_names(tree))
        _strip_docstrings(tree)  # after the names: it edits the tree
        return _Parsed(names, hashlib.sha256(b"py:" + _dump(tree).encode()).hexdigest())
    return _Parsed(*_names_and_fingerprint(code, tree))


STATEMENTS_KEPT = 4096  # top-level statements whose names and dumped text are kept, by their text
_statements: dict[bytes, tuple[frozenset[str], str]] = {}


def _names_and_fingerprint(code: str, tree: ast.Module) -> tuple[frozenset[str], str]:
    """The top-level names and the fingerprint of a parsed program, statement by statement: a proposal is its
    parent with a few statements changed, so the others' names and dumped text are taken from earlier programs.

    Each top-level statement is known by its text from the end of the statement before it to its own end (the
    comments, blank lines and decorators before it included): that text alone makes the statement, wherever it
    stands, so it makes its names and its dump (without docstrings) too. Only the first statement is not looked
    up: its place decides whether it is the module's docstring. The fingerprint is the module's `ast.dump` text's,
    as `_dump` gives it."""
    data = code.encode("utf-8")
    starts = [0]  # of each line, in bytes (the offsets ast gives are in UTF-8 bytes), as the tokenizer counts lines
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    names: set[str] = set()
    dumps: list[str] = []
    body = tree.body
    begin = 0
    for index, node in enumerate(body):
        end = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
        key = data[begin:end]
        begin = end
        known = _statements.get(key) if index else None
        if known is None:
            known = _statement(node, module_docstring=index == 0)
            if index:
                if len(_statements) >= STATEMENTS_KEPT:
                    _statements.clear()
                _statements[key] = known
        names |= known[0]
        if known[1]:
            dumps.append(known[1])
    if body and not dumps:  # the module's docstring alone
        dumps.append("Pass()")
    dumped = f"Module(body=[{', '.join(dumps)}], type_ignores=[])"
    return frozenset(names), hashlib.sha256(b"py:" + dumped.encode()).hexdigest()


def _statement(node: ast.stmt, *, module_docstring: bool) -> tuple[frozenset[str], str]:
    """A top-level statement's names and its dumped text without docstrings ("" for the module's docstring)."""
    holder = ast.Module(body=[node], type_ignores=[])
    names = frozenset(_top_level_names(holder))
    if module_docstring and _is_docstring(node):
        return names, ""
    _strip_docstrings(node)  # after the names: it edits the tree
    return names, _format(node)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


_SCOPES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)  # what may open with a docstring
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")  # the fields that hold statements (or their blocks)


def _strip_docstrings(tree: ast.Module) -> None:
    """Drop the docstring of the module and of every class and function in it. A definition is a statement, so
    only the statement lists are walked (if/for/while/try/with/match blocks, handlers, cases), not expressions."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            body = node.body
            if body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]
        for field in _BLOCKS:
            block = getattr(node, field, None)
            if type(block) is list:
                stack.extend(block)


def _dump(tree: ast.AST) -> str:
    """`ast.dump(tree)` (its defaults: field names, no positions, one line), the same text in about half the time:
    the fingerprints of programs already in a record must not change. Python 3.13 changed ast.dump's text (empty
    fields left out); there, and on any later version, ast.dump itself is used."""
    if sys.version_info >= (3, 13):
        return ast.dump(tree)
    return _format(tree)


def _format(node: object) -> str:
    if isinstance(node, ast.AST):
        cls = type(node)
        fields = _FIELDS.get(cls)
        if fields is None:
            fields = _FIELDS[cls] = tuple((name, getattr(cls, name, ...) is None) for name in cls._fields)
        parts = []
        for name, optional in fields:
            try:
                value = getattr(node, name)
            except AttributeError:
                continue
            if value is None and optional:
                continue
            parts.append(f"{name}={_format(value)}")
        return f"{cls.__name__}({', '.join(parts)})"
    if isinstance(node, list):
        return f"[{', '.join([_format(item) for item in node])}]"
    return repr(node)


_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}  # per node class: (field, None may be left out)

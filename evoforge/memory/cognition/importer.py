"""Reading knowledge files into items: Markdown split by `#`/`##` headings (with optional `kind:`, `trigger:`,
`tags:`, `source:` lines atop a section or the file), plain text as one item, JSONL as one item per line, and
folders of them, recursively. Parsing is complete before anything is stored; errors name the file and line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from evoforge.memory.cognition.items import KINDS, KnowledgeError, KnowledgeItem

MARKDOWN = (".md", ".markdown")
TEXT = (".txt",)
JSONL = (".jsonl",)
SUFFIXES = MARKDOWN + TEXT + JSONL

_HEADING = re.compile(r"^(#{1,2})\s+(.+?)\s*#*\s*$")
_META = re.compile(r"^(kind|trigger|tags|source)\s*:\s*(.*)$", re.IGNORECASE)
_ITEM_FIELDS = {f.name for f in fields(KnowledgeItem)}


@dataclass
class _Section:
    title: str
    line: int
    body: list[str] = field(default_factory=list)


def read_paths(paths: list[Path]) -> list[KnowledgeItem]:
    """Items from files and folders (folders: every .md/.markdown/.txt/.jsonl below, in sorted order)."""
    items: list[KnowledgeItem] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise KnowledgeError(f"{path}: unsupported file type; use {', '.join(SUFFIXES)} or a folder")
            files = [path]
        else:
            raise KnowledgeError(f"{path}: no such file or folder")
        for file in files:
            items.extend(read_file(file))
    return items


def read_file(path: Path) -> list[KnowledgeItem]:
    try:
        body = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise KnowledgeError(f"{path}: cannot read ({exc.strerror})") from exc
    suffix = path.suffix.lower()
    if suffix in JSONL:
        return _read_jsonl(path, body)
    if suffix in TEXT:
        text = body.strip()
        return [_item(path, 1, title=_title_of(path), content=text, kind="note")] if text else []
    return _read_markdown(path, body)


def _title_of(path: Path) -> str:
    return re.sub(r"[_-]+", " ", path.stem).strip() or path.name


def _item(path: Path, line: int, **values: Any) -> KnowledgeItem:
    values.setdefault("source", str(path))
    provenance = {"file": str(path), "line": line, **values.pop("provenance", {})}
    try:
        return KnowledgeItem(provenance=provenance, **values)
    except KnowledgeError as exc:
        raise KnowledgeError(f"{path}:{line}: {exc}") from exc


def _read_markdown(path: Path, body: str) -> list[KnowledgeItem]:
    lines = body.splitlines()
    defaults, start = _metadata(path, lines, 0, {})
    sections: list[_Section] = []
    preamble = _Section(_title_of(path), start + 1)
    for number, line in enumerate(lines[start:], start + 1):
        heading = _HEADING.match(line)
        if heading:
            sections.append(_Section(heading.group(2).strip(), number))
        else:
            (sections[-1] if sections else preamble).body.append(line)
    items = []
    for section in [preamble, *sections]:
        meta, skip = _metadata(path, section.body, section.line, defaults)
        content = "\n".join(section.body[skip:]).strip()
        if content:
            items.append(_item(path, section.line, title=section.title, content=content, **meta))
    return items


def _metadata(path: Path, lines: list[str], first: int, defaults: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """`key: value` lines at the top of a block (blank lines allowed) → fields, and how many lines they took."""
    meta = dict(defaults)
    used = 0
    for offset, line in enumerate(lines):
        match = _META.match(line.strip())
        if not line.strip():
            used = offset + 1
            continue
        if not match:
            break
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "kind" and value not in KINDS:
            raise KnowledgeError(f"{path}:{first + offset + 1}: unknown kind {value!r}; use one of {', '.join(KINDS)}")
        meta[key] = tuple(tag.strip() for tag in value.split(",") if tag.strip()) if key == "tags" else value
        used = offset + 1
    return meta, used


def _read_jsonl(path: Path, body: str) -> list[KnowledgeItem]:
    items = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise KnowledgeError(f"{path}:{number}: each line must be a JSON object with title and content")
        items.append(_item(path, number, **_jsonl_fields(path, number, record)))
    return items


def _jsonl_fields(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    where = f"{path}:{number}"
    unknown = sorted(set(record) - _ITEM_FIELDS)
    if unknown:
        known = ", ".join(sorted(_ITEM_FIELDS))
        raise KnowledgeError(f"{where}: unknown field(s) {', '.join(unknown)}; known fields: {known}")
    for name in ("title", "content"):
        if not isinstance(record.get(name), str):
            raise KnowledgeError(f"{where}: field {name!r} is required and must be a string")
    values = {key: value for key, value in record.items() if key != "id" and value is not None}
    tags = values.get("tags", ())
    values["tags"] = tuple(t.strip() for t in tags.split(",")) if isinstance(tags, str) else tuple(tags)
    for name in ("support", "contradictions", "effect_sign"):
        if name in values and not isinstance(values[name], int):
            raise KnowledgeError(f"{where}: field {name!r} must be an integer")
    if "provenance" in values and not isinstance(values["provenance"], dict):
        raise KnowledgeError(f"{where}: field 'provenance' must be an object")
    if "created_at" in values:
        try:
            values["created_at"] = datetime.fromisoformat(values["created_at"])
        except (TypeError, ValueError) as exc:
            raise KnowledgeError(f"{where}: field 'created_at' is not an ISO date-time") from exc
    return values

"""`evoforge knowledge`: add files to a cognition base, search it, list, show and export its items.

The base is `--kb PATH_OR_URL` or the EVOFORGE_KB environment variable; user errors print one line, exit status 2.
The cognition base (and its embeddings) is imported when a command runs, not for `--help`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.table import Table

from evoforge.cli_common import Command, console, fail, new_app
from evoforge.errors import EvoforgeError

if TYPE_CHECKING:
    from evoforge.memory.cognition import CognitionBase

app = new_app("Add to, search and list a knowledge base.\n\nAdd files to a knowledge base (the cognition base), "
              "search it, list, show and export its items.")

KbOpt = Annotated[
    str | None, typer.Option("--kb", envvar="EVOFORGE_KB", help="knowledge base: SQLite path or SQLAlchemy URL")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"


def _fail(exc: Exception) -> NoReturn:
    fail(exc)


def _existing_file(kb: str) -> Path | None:
    """The SQLite file `kb` names (a plain path or a sqlite:/// URL), or None for other databases and memory."""
    if "://" not in kb:
        return Path(kb).expanduser()
    if kb.startswith("sqlite:///"):
        database = kb.removeprefix("sqlite:///").split("?", 1)[0]
        return Path(database).expanduser() if database not in ("", ":memory:") else None
    return None


@contextmanager
def _base(kb: str | None, *, create: bool = False) -> Iterator[CognitionBase]:
    """The base at `kb`; only `create` (knowledge add) may make a new one: a mistyped path is an error."""
    from evoforge.memory.cognition import CognitionBase, KnowledgeError

    if not kb:
        _fail(KnowledgeError("no knowledge base given: pass --kb PATH (or a database URL) or set EVOFORGE_KB"))
    path = None if create else _existing_file(kb)
    if path is not None and not path.is_file():
        _fail(KnowledgeError(f"no knowledge base at {path}: check the path (`evoforge knowledge add FILES --kb "
                             "PATH` creates one)"))
    try:
        base = CognitionBase.open(kb)
    except EvoforgeError as exc:
        _fail(exc)
    try:
        yield base
    except EvoforgeError as exc:
        _fail(exc)
    finally:
        base.close()


@app.command(cls=Command)
def add(paths: Annotated[list[Path], typer.Argument(help="Markdown, .txt or .jsonl files, or folders")],
        kb: KbOpt = None) -> None:
    """Import files into the base, all or nothing (a bad file names its line and nothing is stored)."""
    from evoforge.memory.cognition._schema import shown

    with _base(kb, create=True) as base:
        before = base.count()
        ids = base.import_paths(paths)
        new = base.count() - before
        console.print(f"imported {len(ids)} items ({new} new, {len(ids) - new} already present) into "
                      f"{shown(kb or '')}; retrieval: {base.mode}")


@app.command(cls=Command)
def search(query: Annotated[str, typer.Argument(help="what to look for, in plain words")], kb: KbOpt = None,
           k: Annotated[int, typer.Option("-k", help="how many items")] = 5,
           kind: Annotated[list[str] | None, typer.Option(help="only these kinds (repeatable)")] = None,
           as_json: JsonOpt = False) -> None:
    """Hybrid search (BM25 + embeddings, fused, diversified)."""
    with _base(kb) as base:
        _check_kinds(kind or [])
        hits = base.search(query, k, kinds=kind or None)
        if as_json:
            rows = [{**h.item.to_dict(), "score": h.score, "lexical_rank": h.lexical_rank,
                     "dense_rank": h.dense_rank} for h in hits]
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table("#", "id", "kind", "title", "score", "lexical", "dense", title=f"retrieval: {base.mode}")
        for rank, hit in enumerate(hits, 1):
            table.add_row(str(rank), str(hit.item.id), hit.item.kind, hit.item.title, f"{hit.score:.4f}",
                          str(hit.lexical_rank or "-"), str(hit.dense_rank or "-"))
        console.print(table if hits else "no matching knowledge items")


def _check_kinds(kinds: list[str]) -> None:
    from evoforge.memory.cognition import KINDS, KnowledgeError

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        _fail(KnowledgeError(f"unknown kind {bad[0]!r}: use one of {', '.join(KINDS)}"))


@app.command("list", cls=Command)
def list_items(kb: KbOpt = None, kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
               limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
               as_json: JsonOpt = False) -> None:
    """Items in id order, with support and contradiction counts."""
    with _base(kb) as base:
        _check_kinds([kind] if kind else [])
        items = base.list(kind=kind, limit=limit)
        if as_json:
            typer.echo(json.dumps([item.to_dict() for item in items], indent=2))
            return
        table = Table("id", "kind", "title", "support", "contra", "source")
        for item in items:
            table.add_row(str(item.id), item.kind, item.title, str(item.support), str(item.contradictions),
                          item.source)
        console.print(table if items else "the knowledge base is empty")


@app.command(cls=Command)
def show(item_id: Annotated[int, typer.Argument(help="item id (see `knowledge list`)")], kb: KbOpt = None,
         as_json: JsonOpt = False) -> None:
    """One item in full."""
    with _base(kb) as base:
        item = base.get(item_id)
        if as_json:
            typer.echo(json.dumps(item.to_dict(), indent=2))
            return
        console.print(f"[bold]#{item.id} {item.title}[/bold]  ({item.kind})", highlight=False)
        for label, value in (("trigger", item.trigger), ("tags", ", ".join(item.tags)), ("source", item.source),
                             ("support", item.support), ("contradictions", item.contradictions),
                             ("effect", item.effect_sign), ("created", item.created_at),
                             ("provenance", json.dumps(item.provenance))):
            console.print(f"{label}: {value}", highlight=False, markup=False)
        console.print()
        console.print(item.content, highlight=False, markup=False)


@app.command(cls=Command)
def export(kb: KbOpt = None, fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.jsonl,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None
           ) -> None:
    """Every item, as JSONL (re-importable with `knowledge add`) or one JSON list."""
    with _base(kb) as base:
        rows = base.export()
    body = "".join(json.dumps(row) + "\n" for row in rows) if fmt is ExportFormat.jsonl else json.dumps(rows, indent=2)
    if output is None:
        typer.echo(body, nl=False)
        return
    try:
        output.write_text(body, encoding="utf-8")
    except OSError as exc:
        from evoforge.memory.cognition import KnowledgeError

        _fail(KnowledgeError(f"cannot write {output}: {exc.strerror}"))
    console.print(f"wrote {len(rows)} items to {output}")


if __name__ == "__main__":
    app()

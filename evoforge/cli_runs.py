"""`evoforge runs`: the run folders under a folder (default ./runs), or, with --record URL, every run a database
holds (a PostgreSQL record shared by many runs of many tasks): id, task, created, trials by status, best score,
live or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from evoforge.cli_common import Command, console, fail
from evoforge.errors import EvoforgeError
from evoforge.models import TrialStatus


def runs(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="where run folders are (default: ./runs)")] = Path(
        "runs"),
    record: Annotated[str | None, typer.Option(help="list the runs this database holds (a SQLAlchemy URL) instead "
                                               "of run folders")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List runs: the run folders under FOLDER, or (--record URL) the runs a database holds."""
    try:
        rows = _database_runs(record) if record is not None else _folder_runs(folder)
    except EvoforgeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    title = f"runs in {rows and rows[0].get('record') or record}" if record is not None else f"run folders in {folder}"
    table = Table(title=title)
    columns = ["id", "task", "created", "trials", "best score", "state"] if record is not None else \
        ["run folder", "run", "task", "trials", "best score"]
    for name in columns:
        table.add_column(name)
    for row in rows:
        counts = ", ".join(f"{n} {status}" for status, n in row["counts"].items() if n) or "none"
        best = f"{row['best_score']:.6g}" if row["best_score"] is not None else "none"
        if record is not None:
            table.add_row(str(row["id"]), row["task"], str(row["created"])[:19], counts, best, row["state"])
        else:
            table.add_row(row["folder"], str(row["id"]), row["task"], counts, best)
    console.print(table)


def _database_runs(url: str) -> list[dict[str, Any]]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from evoforge.memory.record import Record

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise EvoforgeError(f"--record {url!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        raise EvoforgeError(f"--record {url}: no such file {parsed.database}")  # (opening it would make one)
    with Record(url, read_only=True) as record:
        shown = record._engine.url.render_as_string(hide_password=True)
        try:
            found = record.list_runs()
        except SQLAlchemyError as exc:  # not a record (no runs table), or out of reach
            first = str(exc).splitlines()[0]
            raise EvoforgeError(f"--record {shown}: cannot read its runs ({first}); is it an evoforge record?") \
                from None
        return [{"id": r.id, "task": r.task_name, "created": r.created_at,
                 "counts": {s.value: r.counts.get(s.value, 0) for s in TrialStatus}, "total": r.total,
                 "best_score": r.best_score, "state": r.state, "record": shown} for r in found]


def _folder_runs(folder: Path) -> list[dict[str, Any]]:
    from evoforge.memory.record import Record
    from evoforge.run_folder import RECORD_FILE, RECORD_URL_FILE
    from evoforge.views import run_direction

    if not folder.is_dir():
        raise EvoforgeError(f"{folder}: no such folder (give the folder your run folders are in)")
    rows = []
    for path in sorted(p for p in folder.iterdir() if (p / RECORD_FILE).is_file() or (p / RECORD_URL_FILE).is_file()):
        with Record.for_run_dir(path, read_only=True) as record:
            info = record.run_info()
            best = record.best(run_direction(record))
            counts = record.counts()
        rows.append({"folder": str(path), "id": info.id, "task": info.task_name, "counts": counts,
                     "total": sum(counts.values()), "best_score": best.score if best is not None else None})
    return rows


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(runs)

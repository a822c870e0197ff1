"""Where a run folder's record is and which of its runs the folder works on: record.db in the folder, or the
database its record.url names; the run id in its run.json (a folder from before a record held several runs has
none: its record's one run); and the engine that opens a record's URL."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from evoforge.errors import RunError
from evoforge.memory.schema import on_sqlite_connect, on_sqlite_connect_read_only
from evoforge.memory.tables import dumps_json
from evoforge.run_folder import RECORD_FILE, RECORD_URL_FILE, RUN_FILE

__all__ = ["RECORD_FILE", "record_file", "record_url", "run_file", "run_file_id", "write_run_file"]


def record_url(run_dir: Path) -> str | None:
    """The URL in `<run_dir>/record.url` (a run whose record is a database server's, e.g. PostgreSQL), else None."""
    path = Path(run_dir).expanduser().resolve() / RECORD_URL_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def record_file(run_dir: Path, *, must_exist: bool = True) -> Path:
    """`<run_dir>/record.db`; with `must_exist`, RunError (saying what to pass instead) when there is none and no
    record.url names a record elsewhere either."""
    path = Path(run_dir).expanduser().resolve() / RECORD_FILE
    if must_exist and not path.is_file() and record_url(run_dir) is None:
        raise RunError(
            f"no record at {path}: is this a run directory? "
            "Pass the folder a run was started in (it holds record.db), or start one with `evoforge run`."
        )
    return path


def run_file(run_dir: Path) -> dict[str, Any]:
    """What a run folder's `run.json` says: the run it works on ("run_id"), its runner's name ("runner"), and for a
    runner that joined a run, its own task folder ("task_path"); {} for a folder from before run.json."""
    path = Path(run_dir).expanduser().resolve() / RUN_FILE
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        int(found["run_id"])
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: not a run file ({exc}); it names the run of the record this folder works on, "
                       'as {"run_id": N}') from None
    return dict(found)


def run_file_id(run_dir: Path) -> int | None:
    """The id of the run a run folder works on (its `run.json`), None for a folder from before a record held
    several runs (its record's one run)."""
    found = run_file(run_dir)
    return int(found["run_id"]) if found else None


def write_run_file(run_dir: Path, run_id: int, **more: Any) -> None:
    """Name the run a run folder works on (`run.json`, beside record.db or record.url). Written aside and renamed
    into place, so a reader (another runner, `evoforge runs`, the dashboard) never finds it empty or half written."""
    path = Path(run_dir).expanduser().resolve() / RUN_FILE
    partial = path.with_name(f".{RUN_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({"run_id": run_id, **more}) + "\n", encoding="utf-8")
    os.replace(partial, path)


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """The engine of the record at `url` (any SQLAlchemy URL); on SQLite with the record's connection set-up (WAL,
    busy wait, foreign keys; `read_only`: queries only). RunError names a URL that is not one or cannot open."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RunError(f"record URL {url!r} is not a database URL: {exc}") from exc
    kwargs: dict[str, Any] = {"json_serializer": dumps_json, "future": True}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database in (None, "", ":memory:"):
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise RunError(f"cannot open the record at {shown}: {exc}; check the URL and its driver") from exc
    if is_sqlite:
        event.listen(engine, "connect", on_sqlite_connect_read_only if read_only else on_sqlite_connect)
    return engine

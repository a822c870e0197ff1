"""The runs a dashboard shows: each one a run of a record opened read-only, named by a run folder (its run) or a
database URL (each run it holds), with the knowledge base beside it when the run folder holds one. Only these fixed
locations are ever opened."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from evoforge.errors import RunError
from evoforge.memory.record import Record, record_file, record_url, run_file_id
from evoforge.memory.schema import read_only_uri

KNOWLEDGE_FILE = "knowledge.db"


@dataclass(frozen=True)
class RunSource:
    """One run the dashboard serves: `key` names it in URLs (its position), `url` is its record's database."""

    key: str
    label: str
    url: str
    run_dir: Path | None = None
    run_id: int | None = None  # the record's run (None: its first, the one a version-3 record holds)

    @contextmanager
    def record(self) -> Iterator[Record]:
        """The record, opened read-only for one request (a fresh engine: requests run on several threads)."""
        record = Record(self.url, read_only=True, run_id=self.run_id)
        try:
            yield record
        finally:
            record.close()

    def knowledge_url(self, run_config: dict[str, Any]) -> str | None:
        """The run's knowledge base, read-only: the one the run was given (`--kb`, else the task's `knowledge.kb`, as
        the record's config keeps them), else RUN_DIR/knowledge.db; None when there is none to read."""
        given = run_config.get("settings", {}).get("kb") or \
            run_config.get("task_config", {}).get("knowledge", {}).get("kb")
        if given and _is_url(str(given)):
            return str(given)
        path = Path(str(given)).expanduser() if given else (self.run_dir / KNOWLEDGE_FILE if self.run_dir else None)
        return read_only_uri(path.resolve()) if path is not None and path.is_file() else None

    def trial_log(self, trial_id: int, name: str) -> Path | None:
        """A trial's stdout.log / stderr.log in the run folder: the folder is the trial's integer id, the file one of
        two fixed names, so nothing from a request is used as a path."""
        if self.run_dir is None or name not in ("stdout.log", "stderr.log"):
            return None
        path = self.run_dir / "trials" / str(int(trial_id)) / name
        return path if path.is_file() else None


def _is_url(target: str) -> bool:
    if "://" not in target:
        return False
    try:
        make_url(target)
    except ArgumentError:
        return False
    return True


def resolve_sources(targets: Sequence[str | Path]) -> list[RunSource]:
    """A RunSource per target (a run folder holding record.db, or a SQLAlchemy URL); RunError naming a target that
    is neither."""
    if not targets:
        raise RunError("give at least one run folder (it holds record.db) or a database URL")
    sources = []
    for target in targets:
        raw = str(target)
        if _is_url(raw):
            shown = make_url(raw).render_as_string(hide_password=True)
            try:
                with Record(raw, read_only=True) as record:
                    ids = [run.id for run in record.list_runs()]
            except SQLAlchemyError as exc:  # not a record, or out of reach
                raise RunError(f"{shown}: cannot read its runs ({str(exc).splitlines()[0]})") from None
            for run_id in ids or [None]:  # each run the database holds
                label = shown if len(ids) <= 1 else f"{shown} run {run_id}"
                sources.append(RunSource(key=str(len(sources)), label=label, url=raw, run_id=run_id))
            continue
        path = record_file(Path(raw))  # RunError when there is no record.db (nor record.url)
        url = record_url(path.parent) or read_only_uri(path)
        sources.append(RunSource(key=str(len(sources)), label=path.parent.name or str(path.parent),
                                 url=url, run_dir=path.parent, run_id=run_file_id(path.parent)))
    labels = [s.label for s in sources]
    return [s if labels.count(s.label) == 1 or s.run_dir is None else replace(s, label=str(s.run_dir))
            for s in sources]  # two folders of the same name: each shown by its whole path

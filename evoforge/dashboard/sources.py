"""The runs a dashboard shows: each one a record opened read-only, named by a run folder or a database URL, with the
knowledge base beside it when the run folder holds one. Only these fixed locations are ever opened."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from evoforge.errors import RunError
from evoforge.memory.record import Record, record_file
from evoforge.memory.schema import read_only_uri

KNOWLEDGE_FILE = "knowledge.db"


@dataclass(frozen=True)
class RunSource:
    """One run the dashboard serves: `key` names it in URLs (its position), `url` is its record's database."""

    key: str
    label: str
    url: str
    run_dir: Path | None = None

    @contextmanager
    def record(self) -> Iterator[Record]:
        """The record, opened read-only for one request (a fresh engine: requests run on several threads)."""
        record = Record(self.url, read_only=True)
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
    for key, target in enumerate(targets):
        raw = str(target)
        if _is_url(raw):
            shown = make_url(raw).render_as_string(hide_password=True)
            sources.append(RunSource(key=str(key), label=shown, url=raw))
            continue
        path = record_file(Path(raw))  # RunError when there is no record.db
        sources.append(RunSource(key=str(key), label=path.parent.name or str(path.parent),
                                 url=read_only_uri(path), run_dir=path.parent))
    labels = [s.label for s in sources]
    return [s if labels.count(s.label) == 1 or s.run_dir is None else replace(s, label=str(s.run_dir))
            for s in sources]  # two folders of the same name: each shown by its whole path

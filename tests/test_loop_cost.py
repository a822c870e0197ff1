"""Work the loop does once per trial, not again at each step: a program's fingerprint (its AST, dumped and hashed)
is computed when the proposal is recorded and reused to look for an earlier evaluation of the same program."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from taskfactory import make_task

import evoforge
from evoforge import loop
from evoforge.config import RunSettings
from evoforge.memory.record import Record
from evoforge.models import Trial


def test_each_program_is_fingerprinted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codes: Counter[str] = Counter()
    real = loop.program_fingerprint

    def counting(code: str, program_name: str) -> str:
        codes[code] += 1
        return real(code, program_name)

    monkeypatch.setattr(loop, "program_fingerprint", counting)
    evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run",
                 settings=RunSettings(trials=6, concurrency=1, llm="offline"))
    with Record.for_run_dir(tmp_path / "run") as record:
        trials = record.trials()
    assert len(trials) == 6 and all(t.status.finished for t in trials)
    assert sum(codes.values()) == 6  # the seed and five proposals, once each (twice each before)
    assert set(codes) == {t.code for t in trials}


class Statements:
    """The SQL statements the records' engines run (each with the name of the thread that ran it) while counting."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._engines: list[Any] = []

    def watch(self, record: Record) -> None:
        self._engines.append(record._engine)
        event.listen(record._engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append((threading.current_thread().name, " ".join(statement.split())))

    def close(self) -> None:
        for engine in self._engines:
            event.remove(engine, "before_cursor_execute", self._count)

    def matching(self, pattern: str) -> list[str]:
        return [s for _, s in self.seen if re.search(pattern, s)]


def counted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trials: int
                ) -> tuple[Statements, Counter[str], list[Trial]]:
    """An offline run of `trials` trials (concurrency 1) with its record's statements and `record.io` calls
    (by the name of the function sent) counted."""
    statements = Statements()
    calls: Counter[str] = Counter()
    real_init, real_io = Record.__init__, Record.io

    def init(self: Record, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        if not self.read_only:
            statements.watch(self)

    async def io(self: Record, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls[getattr(fn, "__name__", repr(fn))] += 1
        return await real_io(self, fn, *args, **kwargs)

    monkeypatch.setattr(Record, "__init__", init)
    monkeypatch.setattr(Record, "io", io)
    try:
        evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run",
                     settings=RunSettings(trials=trials, concurrency=1, llm="offline"))
    finally:
        monkeypatch.undo()
        statements.close()
    with Record.for_run_dir(tmp_path / "run") as record:
        done = record.trials()
    assert len(done) == trials and all(t.status.finished for t in done)
    return statements, calls, done


def test_a_parents_analysis_is_kept_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The researcher is shown its parent's analysis: one the run wrote is known without a trip to the record's
    thread and a SELECT (before: one trip and one or two reads of the parent's analyses per proposal)."""
    statements, calls, done = counted_run(tmp_path, monkeypatch, 8)
    reads = statements.matching(r"^SELECT .* FROM analyses")
    assert len(reads) <= 2, reads  # only a parent picked before its analysis was written is read (and not kept)
    assert calls["latest_analysis"] == len(reads)
    with Record.for_run_dir(tmp_path / "run") as record:  # what the record holds is what a read would give
        for trial in done:
            texts = [a.text for a in record.analyses(trial.id) if a.kind == "analysis"]
            assert record.latest_analysis(trial.id) == (texts[-1] if texts else "")


def test_the_records_statements_are_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements the record runs at every trial are built once and run with parameters: SQLAlchemy spends
    more CPU building and keying a statement than SQLite spends running it. Six more trials add (nearly) no
    statement objects; before, nearly every execution built its own (~15 a trial)."""
    executed: list[Any] = []  # kept alive: objects told apart by identity

    def grab(_conn: Any, statement: Any, *_args: Any) -> None:
        executed.append(statement)

    real_init = Record.__init__

    def init(self: Record, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        if not self.read_only:
            event.listen(self._engine, "before_execute", grab)

    distinct: list[int] = []
    for trials in (6, 12):
        executed.clear()
        monkeypatch.setattr(Record, "__init__", init)
        try:
            evoforge.run(make_task(tmp_path / f"task{trials}"), run_dir=tmp_path / f"run{trials}",
                         settings=RunSettings(trials=trials, concurrency=1, llm="offline"))
        finally:
            monkeypatch.undo()
        distinct.append(len({id(statement) for statement in executed}))
    assert distinct[1] - distinct[0] <= 4, distinct

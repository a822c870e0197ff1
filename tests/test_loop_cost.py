"""Work the loop does once per trial, not again at each step: a program's fingerprint (its AST, dumped and hashed)
is computed when the proposal is recorded and reused to look for an earlier evaluation of the same program."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from taskfactory import make_task

import evoforge
from evoforge import loop
from evoforge.config import RunSettings
from evoforge.memory.record import Record


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

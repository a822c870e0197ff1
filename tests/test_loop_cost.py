"""Work the loop does once per trial, not again at each step: a program's fingerprint (its AST, dumped and hashed)
is computed when the proposal is recorded and reused to look for an earlier evaluation of the same program."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest
from taskfactory import make_task

import evoforge
from evoforge import loop
from evoforge.config import RunSettings
from evoforge.experiment import sandbox
from evoforge.memory.record import Record
from evoforge.models import Trial
from evoforge.observer import Observer


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


@pytest.mark.skipif(sys.version_info >= (3, 12) or not sandbox._pidfd_works(),
                    reason="Python 3.12+ watches children with pidfds itself; or no pidfd_open here")
def test_evaluations_exits_are_read_by_the_event_loop_not_a_thread_each(tmp_path: Path) -> None:
    """During a run asyncio learns of each evaluation's exit through a pidfd in the event loop (its default, a thread
    blocked in waitpid per child, cost a thread start and a cross-thread wake-up per trial); the previous watcher is
    back afterwards, and a later event loop still runs subprocesses."""
    before = asyncio.get_child_watcher()
    watchers: list[str] = []

    class Watch(Observer):
        def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
            watchers.append(type(asyncio.get_child_watcher()).__name__)

    summary = evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run",
                           settings=RunSettings(trials=4, concurrency=1, llm="offline"), observer=Watch())
    assert summary.counts["succeeded"] >= 1
    assert watchers and set(watchers) == {"PidfdChildWatcher"}
    assert asyncio.get_child_watcher() is before

    async def child() -> int:
        process = await asyncio.create_subprocess_exec("true")
        return await process.wait()

    assert asyncio.run(child()) == 0

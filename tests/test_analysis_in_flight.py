"""A trial's analysis runs beside its worker's next proposal: once the trial is committed, its worker goes on (the
analysis's LLM call and writes no longer add to the time between two proposals of one worker), yet a proposal that
picks it as a parent waits for its analysis, and the run ends only once every analysis is written."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest
from taskfactory import make_task

import evoforge
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.config import RunSettings
from evoforge.loop import Conductor
from evoforge.memory.record import Record

TRIALS = 8


def test_a_worker_proposes_again_while_its_trial_is_analysed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    claimed: dict[int, asyncio.Event] = collections.defaultdict(asyncio.Event)  # by trial number, once claimed
    seen: list[bool] = []  # per analysed trial: whether the next trial was claimed while it was being analysed
    claim, analyze = Conductor._claim_slot, OfflineAnalyzer.analyze

    def claiming(self: Conductor) -> bool:
        if claim(self):
            claimed[self.state.started].set()
            return True
        return False

    async def slow_analysis(self: OfflineAnalyzer, inp: Any) -> Any:
        if 1 < inp.trial.id < TRIALS:  # one worker: the next trial's claim comes while this one is analysed
            try:
                await asyncio.wait_for(claimed[inp.trial.id + 1].wait(), timeout=10)
                seen.append(True)
            except TimeoutError:
                seen.append(False)
        return await analyze(self, inp)

    monkeypatch.setattr(Conductor, "_claim_slot", claiming)
    monkeypatch.setattr(OfflineAnalyzer, "analyze", slow_analysis)
    run_dir = tmp_path / "run"
    evoforge.run(make_task(tmp_path / "task"), run_dir=run_dir,
                 settings=RunSettings(trials=TRIALS, concurrency=1, prefetch=0, llm="offline"))
    assert len(seen) >= 3 and all(seen), seen
    with Record.for_run_dir(run_dir) as record:
        trials = record.trials()
        analysed = [t for t in trials if t.reused_from is None]
        assert all(any(a.kind == "analysis" for a in record.analyses(t.id)) for t in analysed)  # all written

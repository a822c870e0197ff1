"""The picks in flight the conductor hands each pick (`pending`) hold only the parents of trials being proposed: a
pick's cost does not grow with every parent the run has ever used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.memory.record import Record
from evoforge.memory.sampling import Sampler
from evoforge.memory.sampling._base import Pick
from evoforge.models import Direction, Trial


def test_pending_holds_only_the_parents_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []  # (parents listed, picks in flight) at each pick
    pick = Sampler.pick

    def watching(self: Sampler, trials: Sequence[Trial], direction: Direction, pending: Mapping[int, int] | None,
                 k: int) -> Pick:
        chosen = pick(self, trials, direction, pending, k)
        seen.append((len(pending or {}), sum((pending or {}).values())))
        return chosen

    monkeypatch.setattr(Sampler, "pick", watching)
    settings = RunSettings(trials=16, concurrency=1, prefetch=2, llm="offline")
    summary = evoforge.run(make_task(tmp_path / "task"), run_dir=tmp_path / "run", settings=settings)
    assert summary.stop_reason == "reached 16 trials" and len(seen) == 15
    with Record.for_run_dir(tmp_path / "run") as record:
        parents = {t.parent_ids[0] for t in record.trials() if t.parent_ids}
    assert len(parents) > 3  # more parents over the run than can be in flight at once
    assert all(listed <= in_flight <= 2 for listed, in_flight in seen), seen  # 3 workers: at most 2 others in flight

"""An unexpected exception in one worker (knowledge base, analyzer, observer) fails that trial or that analysis as an
internal error with its traceback, and the run goes on; only the same happening several times in a row stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from taskfactory import make_task

import evoforge
from evoforge.analysis.offline import OfflineAnalyzer
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.loop import INTERNAL_ERRORS_TO_STOP
from evoforge.memory.cognition.store import CognitionBase
from evoforge.memory.record import Record
from evoforge.models import Trial, TrialStatus
from evoforge.observer import Observer
from evoforge.views import run_overview


class Broken:
    """Wraps a method: raises on the calls numbered in `fail_on` (1-based), else calls through."""

    def __init__(self, method: Any, fail_on: set[int] | None = None) -> None:
        self.method, self.fail_on, self.calls = method, fail_on, 0

    def make(self) -> Any:
        broken = self

        def call(*args: Any, **kwargs: Any) -> Any:
            broken.calls += 1
            if broken.fail_on is None or broken.calls in broken.fail_on:
                raise KeyError(f"injected fault #{broken.calls}")
            return broken.method(*args, **kwargs)

        return call


def _trials(run_dir: Path) -> list[Trial]:
    with Record.for_run_dir(run_dir) as record:
        return record.trials()


def _run(tmp_path: Path, trials: int = 8, observer: Observer | None = None) -> Any:
    task = make_task(tmp_path / "task")
    return evoforge.run(task, run_dir=tmp_path / "run",
                        settings=RunSettings(trials=trials, concurrency=1, llm="offline"), observer=observer)


def test_a_knowledge_base_fault_fails_one_trial_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CognitionBase, "search", Broken(CognitionBase.search, {2}).make())
    summary = _run(tmp_path)
    assert summary.stop_reason == "reached 8 trials"
    trials = _trials(tmp_path / "run")
    assert len(trials) == 8 and all(t.status.finished for t in trials)
    broken = [t for t in trials if t.error_class == "internal_error"]
    assert len(broken) == 1 and broken[0].status is TrialStatus.FAILED
    assert broken[0].error_message.startswith("KeyError: 'injected fault #2'")
    assert "Traceback" in broken[0].error_message and "in call" in broken[0].error_message
    assert summary.counts["succeeded"] == 7


def test_an_analyzer_fault_fails_that_analysis_and_keeps_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(OfflineAnalyzer, "analyze", Broken(OfflineAnalyzer.analyze, {3}).make())
    summary = _run(tmp_path)
    assert summary.stop_reason == "reached 8 trials" and summary.counts["succeeded"] == 8
    with Record.for_run_dir(tmp_path / "run") as record:
        notes = [(t.id, a) for t in record.trials() for a in record.analyses(t.id)
                 if a.data.get("source") == "internal_error"]
    assert len(notes) == 1
    trial_id, note = notes[0]
    assert note.data["error"] == "internal error: KeyError: 'injected fault #3'"
    assert "Traceback" in note.data["traceback"]


def test_an_observer_fault_does_not_end_the_run(tmp_path: Path) -> None:
    class Faulty(Observer):
        def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
            if trial.id == 4:
                raise RuntimeError("the progress bar broke")

    summary = _run(tmp_path, observer=Faulty())
    assert summary.stop_reason == "reached 8 trials" and summary.counts["succeeded"] == 8


def test_faults_in_a_row_stop_the_run_with_the_reason_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CognitionBase, "search", Broken(CognitionBase.search).make())  # every call
    with pytest.raises(RunError, match=rf"{INTERNAL_ERRORS_TO_STOP} internal errors in a row, the last in trial #\d+: "
                                       r"KeyError: 'injected fault #\d+'"):
        _run(tmp_path, trials=40)
    trials = _trials(tmp_path / "run")
    assert trials[0].status is TrialStatus.SUCCEEDED  # the seed needs no knowledge
    assert 1 + INTERNAL_ERRORS_TO_STOP <= len(trials) < 40
    assert all(t.error_class == "internal_error" for t in trials[1:])
    assert "internal errors in a row" in run_overview(tmp_path / "run")["stopped_because"]

"""The evaluator's seal: an evaluator edited mid-run stops the run with a message naming it (nothing finished is
lost), a resume with a changed evaluator is refused, and one with the original file goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.experiment.integrity import EvaluatorChanged, EvaluatorSeal, evaluator_files
from evoforge.memory.record import Record
from evoforge.models import Trial, TrialStatus
from evoforge.observer import Observer
from evoforge.task.loader import load_task


class EditEvaluatorAt(Observer):
    """Edits the task's evaluator once trial `n` is finished (as a user might, mid-run)."""

    def __init__(self, evaluator: Path, n: int) -> None:
        self.evaluator, self.n, self.original = evaluator, n, evaluator.read_text()

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        if trial.id == self.n:
            self.evaluator.write_text(self.original.replace("-(x - 3.0) ** 2", "-(x - 3.0) ** 2 + 100.0"))


def _statuses(run_dir: Path) -> list[TrialStatus]:
    with Record.for_run_dir(run_dir) as record:
        return [t.status for t in record.trials()]


def _finished(run_dir: Path) -> list[Trial]:
    with Record.for_run_dir(run_dir) as record:
        return [t for t in record.trials() if t.status.finished]


def test_an_evaluator_edited_mid_run_stops_the_run(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    evaluator = task / "evaluator.py"
    run_dir = tmp_path / "run"
    edit = EditEvaluatorAt(evaluator, 3)
    with pytest.raises(EvaluatorChanged, match=r"evaluator\.py changed since the run started"):
        evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=10, concurrency=1, llm="offline"),
                     observer=edit)
    # Trial 3 is committed (and the file edited) after its evaluation slot is free again, so the next trial may have
    # been let go, with the original file, meanwhile: at least 3 finished, none scored by the edited file (+100).
    finished = _finished(run_dir)
    assert len(finished) >= 3 and all(t.score is None or t.score <= 0 for t in finished), finished
    with Record.for_run_dir(run_dir) as record:
        assert "changed since the run started" in (record.load_state("stopped") or {}).get("reason", "")
    with pytest.raises(EvaluatorChanged, match="not the one this run started with"):
        evoforge.resume(run_dir)  # still the edited file: refused before any trial runs
    assert len(_finished(run_dir)) == len(finished)
    evaluator.write_text(edit.original)
    evoforge.resume(run_dir)  # the original file again: the run goes on to its rule
    assert len([s for s in _statuses(run_dir) if s.finished]) == 10


def test_the_seal_covers_the_files_a_command_evaluator_names(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    (task / "eval.sh").write_text("echo '{\"score\": 1}'\n")
    text = (task / "task.yaml").read_text().replace("evaluator: evaluator.py", "command: bash eval.sh {program}")
    (task / "task.yaml").write_text(text)
    loaded = load_task(task)
    assert evaluator_files(loaded) == ((task / "eval.sh").resolve(),)
    seal = EvaluatorSeal.of(loaded)
    seal.check()
    (task / "eval.sh").write_text("echo '{\"score\": 2}'\n")
    with pytest.raises(EvaluatorChanged, match=r"eval\.sh"):
        seal.check()

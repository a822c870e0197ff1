"""The live progress bar of `evoforge run` and `resume` (rich): trials done of the limit, best score, failures.

It redraws once a second (a redraw costs ~0.6 ms; rich's default, ten a second, cost the evoforge process more than
1% of its CPU in a run of cheap trials); a finished trial only updates the numbers the next redraw shows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evoforge.loop import Observer
from evoforge.models import Trial, TrialStatus
from evoforge.settings import RunSettings

REDRAWS_PER_SECOND = 1


class ProgressObserver(Observer):
    """A rich progress bar: trials done of the limit, best score, failures."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task_id: Any = None

    def run_started(self, *, run_dir: Path, proposer: str, settings: RunSettings, done: int,
                    notes: Sequence[str] = ()) -> None:
        self.console.print(f"run directory: {run_dir}")
        self.console.print(f"proposer: {proposer}", highlight=False)
        for note in notes:
            self.console.print(note, highlight=False, markup=False)
        self.progress = Progress(
            TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}  failed {task.fields[failed]}"), TimeElapsedColumn(),
            console=self.console, transient=False, refresh_per_second=REDRAWS_PER_SECOND,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("trials", total=settings.trials, completed=done, best="-", failed=0)

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        if self.progress is None:
            return
        done = sum(n for status, n in counts.items() if TrialStatus(status).finished)
        best_text = f"{best.score:.6g}" if best is not None and best.score is not None else "-"
        self.progress.update(self.task_id, completed=done, best=best_text, failed=counts["failed"])

    def run_finished(self) -> None:
        if self.progress is not None:
            self.progress.stop()

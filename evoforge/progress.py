"""The live progress line of `evoforge run` and `resume` (rich): trials done of the limit, best score, failures.

It is one line of text redrawn once a second (~0.13 ms a redraw); rich's Progress table at its default ten redraws
a second (~0.6 ms each) cost the evoforge process over 1% of its CPU in a run of cheap trials. A finished trial only
updates the numbers the next redraw shows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from evoforge.config import RunSettings
from evoforge.models import FINISHED, Trial
from evoforge.observer import Observer

REDRAWS_PER_SECOND = 1
BAR_WIDTH = 40


class ProgressLine:
    """What the line shows; rich renders it at each redraw."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.best, self.failed = total, done, "-", 0
        self.started = time.monotonic()

    def __rich__(self) -> Text:
        filled = min(BAR_WIDTH, round(BAR_WIDTH * self.done / self.total)) if self.total else 0
        line = Text("trials ", no_wrap=True, overflow="ellipsis")
        line.append("━" * filled, style="bar.finished" if filled == BAR_WIDTH else "bar.complete")
        line.append("━" * (BAR_WIDTH - filled), style="bar.back")
        line.append(f" {self.done}/{self.total}", style="progress.download")
        line.append(f" best {self.best}  failed {self.failed} ")
        elapsed = int(time.monotonic() - self.started)
        line.append(f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}", style="progress.elapsed")
        return line


class ProgressObserver(Observer):
    """A live line: trials done of the limit (with a bar), best score, failures, time elapsed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.line: ProgressLine | None = None

    def run_started(self, *, run_dir: Path, proposer: str, settings: RunSettings, done: int,
                    notes: Sequence[str] = ()) -> None:
        self.console.print(f"run directory: {run_dir}")
        self.console.print(f"proposer: {proposer}", highlight=False)
        for note in notes:
            self.console.print(note, highlight=False, markup=False)
        self.line = ProgressLine(settings.trials, done)
        self.live = Live(self.line, console=self.console, transient=False, refresh_per_second=REDRAWS_PER_SECOND)
        self.live.start()

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        if self.line is None:
            return
        self.line.done = sum(n for status, n in counts.items() if status in FINISHED)
        self.line.best = f"{best.score:.6g}" if best is not None and best.score is not None else "-"
        self.line.failed = counts["failed"]

    def run_finished(self) -> None:
        if self.live is not None:
            self.live.stop()

"""The observer interface of a run's progress: the conductor calls it, the CLI's progress line and tests implement
it. Kept apart from the loop so that what draws progress need not import the loop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evoforge.config import RunSettings
    from evoforge.models import Trial


class Observer:
    """Receives progress; the CLI draws a progress bar from it, tests may count. Methods do nothing by default."""

    def run_started(self, *, run_dir: Path, proposer: str, settings: RunSettings, done: int,
                    notes: Sequence[str] = ()) -> None:
        return None

    def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
        return None

    def run_finished(self) -> None:
        return None

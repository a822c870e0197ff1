"""Loads a task folder into a validated `Task`; every mistake is reported as one line naming file and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evoforge.task.config import TaskConfig


@dataclass(frozen=True)
class Task:
    """A loaded task: its folder, validated config, and the texts the loop needs."""

    root: Path
    config: TaskConfig
    problem_text: str
    seed_program: str

    @property
    def program_name(self) -> str:
        """File name the candidate is written under in each trial folder (e.g. `initial_program.py`)."""
        return Path(self.config.program).name

    @property
    def evaluator_path(self) -> Path | None:
        return (self.root / self.config.evaluator).resolve() if self.config.evaluator else None


def load_task(path: str | Path) -> Task:
    raise NotImplementedError  # being written

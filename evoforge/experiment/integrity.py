"""The evaluator's seal: the files that score candidates (a Python evaluator, or the task files a command evaluator
names) are hashed when a run starts, and every stage checks the hash before it runs. Scores from two different
evaluators are not comparable, so a changed evaluator stops the run with a message naming the file."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from evoforge.errors import EvoforgeError
from evoforge.task.loader import TASK_FILE, Task


class EvaluatorChanged(EvoforgeError):
    """An evaluator file changed (or vanished) during a run, or since the run started: the run stops."""


def evaluator_files(task: Task) -> tuple[Path, ...]:
    """What scores a candidate: the Python evaluator, else every file of the task folder that the command names
    (e.g. `bash eval.sh {program}` → eval.sh), task.yaml aside."""
    if task.evaluator_path is not None:
        return (task.evaluator_path,)
    root = task.root.resolve()
    named = []
    try:
        words = shlex.split(task.config.command or "")
    except ValueError:  # unbalanced quotes: the command's own error surfaces when it runs
        words = (task.config.command or "").split()
    for word in words:
        if "{" in word or word.startswith("-"):
            continue
        path = (root / word).resolve()
        if path.is_file() and path.is_relative_to(root) and path.name != TASK_FILE:
            named.append(path)
    return tuple(dict.fromkeys(named))


def _digest(paths: tuple[Path, ...]) -> dict[str, str]:
    digests = {}
    for path in paths:
        try:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            digests[str(path)] = f"unreadable: {exc.strerror or exc}"
    return digests


@dataclass
class EvaluatorSeal:
    """The hashes of a task's evaluator files, taken once; `check` compares the files with them."""

    files: tuple[Path, ...]
    hashes: dict[str, str]

    @classmethod
    def of(cls, task: Task) -> EvaluatorSeal:
        files = evaluator_files(task)
        return cls(files, _digest(files))

    def check(self, since: str = "the run started") -> None:
        """Raise EvaluatorChanged naming the first file whose content differs from the seal."""
        now = _digest(self.files)
        for path, digest in self.hashes.items():
            if now.get(path) != digest:
                raise EvaluatorChanged(
                    f"the evaluator {path} changed since {since} (sha256 {digest[:12]} → {now.get(path, '?')[:12]}): "
                    "scores from two evaluators are not comparable, so the run stops; restore the file to go on "
                    "(`evoforge resume`), or start a new run for the new evaluator"
                )

    def matches(self, recorded: dict[str, str]) -> None:
        """Raise EvaluatorChanged when `recorded` (a seal's hashes kept by the record) differs from this one."""
        for path, digest in recorded.items():
            if self.hashes.get(path) != digest:
                raise EvaluatorChanged(
                    f"the evaluator {path} is not the one this run started with (sha256 {digest[:12]} then, "
                    f"{self.hashes.get(path, 'absent')[:12]} now): restore it to resume, or start a new run"
                )

"""The evaluator's seal: the files that score candidates (a Python evaluator, or the task files a command evaluator
names) are hashed when a run starts, and every stage checks the hash before it runs. Scores from two different
evaluators are not comparable, so a changed evaluator stops the run with a message naming the file.

A stage's check reads the files again only when their status (device, inode, size, modification and change times)
is not the one taken just before they last matched, when that read came within RACY_S of a file's last change (a
change in the same tick of the file system's clock could leave its times as they were: git's "racily clean" index
entries), or REHASH_S after it: a stage of an unchanged evaluator costs a stat per file, not a read and a sha256.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from dataclasses import dataclass, field
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


RACY_S = 3.0  # a file changed this recently (by its own times) is read at each check: a coarse or 2 s clock
REHASH_S = 10.0  # read again at least this often, whatever its status says
Status = tuple[int, int, int, int, int]


def _status(path: Path) -> Status | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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
    _seen: tuple[Status | None, ...] | None = field(default=None, repr=False)  # the files' status at a match
    _until: float = 0.0  # time.time() until which `_seen` may stand for a read

    @classmethod
    def of(cls, task: Task) -> EvaluatorSeal:
        files = evaluator_files(task)
        return cls(files, _digest(files))

    def check(self, since: str = "the run started") -> None:
        """Raise EvaluatorChanged naming the first file whose content differs from the seal (read again only when
        its status changed since it last matched, or that match may not vouch for it: see the module's doc)."""
        looked = time.time()
        seen = tuple(_status(path) for path in self.files)
        if seen == self._seen and looked < self._until:
            return
        self._seen = None
        now = _digest(self.files)
        for path, digest in self.hashes.items():
            if now.get(path) != digest:
                raise EvaluatorChanged(
                    f"the evaluator {path} changed since {since} (sha256 {digest[:12]} → {now.get(path, '?')[:12]}): "
                    "scores from two evaluators are not comparable, so the run stops; restore the file to go on "
                    "(`evoforge resume`), or start a new run for the new evaluator"
                )
        if seen and None not in seen and looked - max(max(st[3], st[4]) for st in seen if st) / 1e9 > RACY_S:
            self._seen, self._until = seen, looked + REHASH_S  # the status taken before the read stands for it

    def matches(self, recorded: dict[str, str]) -> None:
        """Raise EvaluatorChanged when `recorded` (a seal's hashes kept by the record) differs from this one."""
        for path, digest in recorded.items():
            if self.hashes.get(path) != digest:
                raise EvaluatorChanged(
                    f"the evaluator {path} is not the one this run started with (sha256 {digest[:12]} then, "
                    f"{self.hashes.get(path, 'absent')[:12]} now): restore it to resume, or start a new run"
                )

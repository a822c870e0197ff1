"""Writes the starter task (`evoforge init`): a tiny working task folder the user edits into their own."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from evoforge.errors import TaskError

STARTER_FILES = ("task.yaml", "problem.md", "initial_program.py", "evaluator.py")


def starter_files() -> dict[str, str]:
    """The starter task's files, by name, as shipped in the evoforge package."""
    folder: Traversable = resources.files("evoforge.task") / "starter"
    return {name: (folder / name).read_text(encoding="utf-8") for name in STARTER_FILES}


def write_starter_task(dest: Path) -> Path:
    """Write the starter task into folder `dest` (created if absent) and return it.

    Refuses a `dest` that is a file or a folder with anything in it, so nothing of the user's is overwritten.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise TaskError(f"{dest}: is a file; give a new or empty folder for the starter task")
    if dest.is_dir() and any(dest.iterdir()):
        raise TaskError(f"{dest}: folder is not empty; give a new or empty folder for the starter task")
    files = starter_files()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (dest / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TaskError(f"{dest}: cannot write the starter task ({exc.strerror or exc})") from None
    return dest

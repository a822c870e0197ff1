"""Disk use of trials: the watch that stops a trial writing past `limits.disk_mb`, the clean-up after it, and the
retention rule for large trial files (with the size of a run folder, for `status`)."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

MB = 1024 * 1024
POLL_S = 0.25
MAX_ENTRIES = 100_000  # files and folders a trial may hold; a flood of tiny files is a disk attack too
KEEP_SUFFIXES = (".log", ".jsonl")  # logs and telemetry: the record of what happened


def folder_usage(folder: Path, max_entries: int = MAX_ENTRIES) -> tuple[int, int]:
    """(bytes, entries) under `folder`: allocated bytes of regular files (sparse holes do not count, apparent
    size does when larger), and files + folders; stops counting past `max_entries`."""
    total, entries, stack = 0, 0, [folder]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            total += max(st.st_blocks * 512, 0)
                    except OSError:
                        continue
        except OSError:
            continue
    return total, entries


def over_limit(used: int, entries: int, disk_mb: int) -> str | None:
    """Why a trial folder that holds `used` bytes in `entries` files and folders (folder_usage) is over its limit
    `disk_mb`, or None when it is not; waits.Ending.on_disk measures it every POLL_S while a trial runs."""
    if used > disk_mb * MB:
        return f"the trial folder grew past disk_mb={disk_mb} ({used // MB} MB)"
    if entries > MAX_ENTRIES:
        return f"the trial folder holds more than {MAX_ENTRIES} files and folders"
    return None


def clear_trial(folder: Path, keep: Collection[str]) -> int:
    """Delete what a trial wrote into `folder` except the files named in `keep` and its logs; returns bytes freed."""
    freed = 0
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        try:
            if path.is_symlink() or path.is_file():
                if path.parent == folder and (path.name in keep or path.name.endswith(KEEP_SUFFIXES)):
                    continue
                freed += path.lstat().st_blocks * 512
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError:
            continue
    return freed


def retain(trials_dir: Path, keep_trials: Collection[int], failed: Collection[int], threshold_mb: float,
           program_names: Collection[str] = ()) -> int:
    """The retention rule for large trial files: in every trial folder under `trials_dir` other than
    `keep_trials` (the best), delete files over `threshold_mb`, except programs and the logs of `failed` trials.
    Returns the bytes freed."""
    freed = 0
    for folder in trials_dir.iterdir() if trials_dir.is_dir() else ():
        if not folder.is_dir() or not folder.name.isdigit() or int(folder.name) in keep_trials:
            continue
        for path in folder.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink() or path.stat().st_size <= threshold_mb * MB:
                    continue
                if path.name in program_names or (int(folder.name) in failed and path.name.endswith(".log")):
                    continue
                freed += path.stat().st_blocks * 512
                path.unlink()
            except OSError:
                continue
    return freed


def run_folder_bytes(run_dir: Path) -> int:
    """How many bytes the run folder holds on disk (record, knowledge base and trial folders), for `status`."""
    return folder_usage(run_dir, max_entries=10_000_000)[0]

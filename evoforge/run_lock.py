"""One process at a time per run directory: `run` and `resume` hold an exclusive lock on `<run_dir>/run.lock` for
as long as they drive the loop.

The operating system drops the lock when the process ends, however it ends (`kill -9` included), so a crashed run
can be resumed at once, while a second `resume` of a run that is still going is refused instead of re-running the
trials it has in flight. The file names its holder (`pid … (since …)`) while the run goes and is emptied when it
ends; after a `kill -9` the name stays, and `lock_holder` tells that it is stale. Readers (`evoforge status`,
`show`, `export`) take no lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from evoforge.errors import RunError
from evoforge.run_folder import LOCK_FILE

_TRIES, _PAUSE_S = 20, 0.01  # `lock_holder` (status) holds a shared lock for a moment: that is not a live run


def _take(fd: int) -> bool:
    for attempt in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < _TRIES:
                time.sleep(_PAUSE_S)
    return False


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s lock for the body; RunError (naming the holder) when another process holds it, or when the
    folder cannot be written."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by evaluators (PEP 446)
    except OSError as exc:
        raise RunError(
            f"cannot write in {run_dir} ({exc.strerror}): a run writes its record and trials there; "
            "to go on with an archived run, copy its folder somewhere writable and resume the copy"
        ) from None
    held = False
    try:
        if not _take(fd):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunError(
                f"{run_dir} is being run right now by {holder}: wait for it to finish, or stop it, before "
                "`evoforge resume` (a run killed with kill -9 or Ctrl-C leaves no lock behind)"
            ) from None
        held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)\n".encode(), 0)
        yield
    finally:
        if held:
            try:
                os.ftruncate(fd, 0)  # the run is over: the file no longer names a holder
            except OSError:
                pass
        os.close(fd)  # closing the descriptor releases the lock


def lock_holder(run_dir: Path) -> dict[str, str | None]:
    """Who drives the run now, read without writing anything: `state` is "running" (a live process holds the
    lock), "stale" (the file names a holder that is gone: killed with kill -9) or "free"; `holder` is the name."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {"state": "free", "holder": None}
    try:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"state": "running", "holder": holder or "another process"}
        except OSError:
            return {"state": "free" if holder is None else "unknown", "holder": holder}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {"state": "stale" if holder else "free", "holder": holder}
    finally:
        os.close(fd)

"""One process at a time per run directory: `run` and `resume` hold an exclusive lock on `<run_dir>/run.lock` for
as long as they drive the loop.

The operating system drops the lock when the process ends, however it ends (`kill -9` included), so a crashed run
can be resumed at once, while a second `resume` of a run that is still going is refused instead of re-running the
trials it has in flight. Readers (`evoforge status`, `show`, `export`) take no lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from evoforge.errors import RunError

LOCK_FILE = "run.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s lock for the body; RunError (naming the holder) when another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by evaluators (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunError(
                f"{run_dir} is being run right now by {holder}: wait for it to finish, or stop it, before "
                "`evoforge resume` (a run killed with kill -9 or Ctrl-C leaves no lock behind)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

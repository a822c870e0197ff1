"""A throw-away PostgreSQL cluster for the tests: Debian's server binaries (`make test` installs them), `initdb` into
a temporary folder, `pg_ctl` on 127.0.0.1 at a free port with its socket in that folder, trust authentication and
fsync off; run as the postgres user when the tests run as root (PostgreSQL refuses root). Stopped at the end. A loud
skip where PostgreSQL is missing, a failure under CI."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 60


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _missing(reason: str) -> None:
    message = f"POSTGRESQL TESTS NOT RUN: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A fresh PostgreSQL cluster; yields its SQLAlchemy URL (psycopg 3), database `postgres`, user `postgres`."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("the psycopg package is not installed (pip install -e '.[postgres]'; `make dev` does it)")
    bin_dir = _bin_dir()
    if bin_dir is None:
        _missing("no PostgreSQL server binaries (apt-get install -y postgresql; `make test` does it)")
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="evoforge-pg-"))
    data = folder / "data"
    if as_root:
        shutil.chown(folder, "postgres")
    port = _free_port()
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", user, "-E", "UTF8"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off"
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                        str(folder / "log"), "-w", "-t", str(START_TIMEOUT_S), "start"],
                       check=True, capture_output=True, timeout=START_TIMEOUT_S + 10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"could not start a throw-away PostgreSQL: {exc}; {getattr(exc, 'stderr', b'')!r} {log[-500:]}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S  # pg_ctl -w waited for it; this bounds a slow accept
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=START_TIMEOUT_S)
        shutil.rmtree(folder, ignore_errors=True)

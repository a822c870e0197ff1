"""Archived runs and places that are not there: the reading commands open the record read-only and work on a folder
that cannot be written; run/resume there say so in one line; `--kb` never creates a base by mistake; `run.lock` is
emptied when a run ends and `status` tells a stale one (its holder killed) from a live one."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from recordfactory import make_record

from evoforge.run_lock import LOCK_FILE, run_lock

CLI = [sys.executable, "-m", "evoforge.cli"]
REPO = Path(__file__).resolve().parents[1]


def _read_only(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with `folder` read-only for it. As root, permissions stop nothing, so the folder is bind-mounted
    read-only in a private mount namespace; otherwise it is made read-only with chmod (and restored)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        try:
            return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: no honest way to make a folder read-only here")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), *CLI, *args],
                          capture_output=True, text=True, timeout=120)
    if "mount" in proc.stderr and proc.returncode != 0 and "evoforge" not in proc.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.strip()}")
    return proc


KILLED_WRITER = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from recordfactory import make_record
    make_record(Path({run_dir!r}), close=False)
    os._exit(0)  # like kill -9: no checkpoint, the last writes stay in record.db-wal
""")


@pytest.fixture(params=["closed", "read before", "killed"])
def archived_run(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    if request.param in ("closed", "read before"):
        make_record(run_dir)
        for leftover in run_dir.glob("record.db-*"):
            leftover.unlink()  # a run that ended cleanly leaves record.db alone
        if request.param == "read before":  # a reader's -shm and empty -wal stay behind
            subprocess.run([*CLI, "status", str(run_dir)], check=True, capture_output=True, timeout=120)
            assert (run_dir / "record.db-shm").exists()
    else:
        code = KILLED_WRITER.format(tests=str(REPO / "tests"), run_dir=str(run_dir))
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert (run_dir / "record.db-wal").stat().st_size > 0  # the trials live in the WAL only
    return run_dir


def test_reading_commands_work_on_a_read_only_run(archived_run: Path) -> None:
    before = sorted(p.name for p in archived_run.iterdir())
    status = _read_only(archived_run, "status", str(archived_run), "--json")
    assert status.returncode == 0, status.stderr
    overview = json.loads(status.stdout)
    assert (overview["succeeded"], overview["failed"], overview["best_score"]) == (4, 1, 2.5)
    best = _read_only(archived_run, "best", str(archived_run), "--json")
    assert best.returncode == 0 and json.loads(best.stdout)["id"] == 2, best.stderr
    shown = _read_only(archived_run, "show", str(archived_run), "3", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["error_class"] == "crash:SyntaxError", shown.stderr
    exported = _read_only(archived_run, "export", str(archived_run), "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    assert [row["id"] for row in csv.DictReader(io.StringIO(exported.stdout))] == ["1", "2", "3", "4", "5"]
    assert sorted(p.name for p in archived_run.iterdir()) == before


def test_run_and_resume_on_a_read_only_run_say_so_in_one_line(tmp_path: Path) -> None:
    run_dir = make_record(tmp_path / "run")
    task = tmp_path / "task"
    task.mkdir()
    for args in (["resume", str(run_dir)], ["run", str(task), "--run-dir", str(run_dir), "--llm", "offline"]):
        done = _read_only(run_dir, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        if args[0] == "resume":
            assert f"cannot write in {run_dir}" in done.stderr


def test_a_mistyped_kb_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "knowlege.db"
    for command in (["list"], ["search", "anything"], ["show", "1"], ["export"]):
        done = subprocess.run([*CLI, "knowledge", *command, "--kb", str(typo)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no knowledge base at {typo}" in done.stderr and done.stderr.count("\n") == 1
        assert not typo.exists()
        url = subprocess.run([*CLI, "knowledge", *command, "--kb", f"sqlite:///{typo}"], capture_output=True,
                             text=True, timeout=120)
        assert url.returncode == 2 and not typo.exists(), url.stderr


def test_the_lock_names_no_holder_after_the_run(tmp_path: Path) -> None:
    from evoforge.run_lock import lock_holder

    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
        assert lock_holder(tmp_path)["state"] == "running"
    assert (tmp_path / LOCK_FILE).read_text() == ""
    assert lock_holder(tmp_path) == {"state": "free", "holder": None}


def test_status_tells_a_stale_lock(tmp_path: Path) -> None:
    run_dir = make_record(tmp_path / "run")
    code = ("import os, signal, sys; from pathlib import Path; from evoforge.run_lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(run_dir)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (run_dir / LOCK_FILE).read_text().startswith("pid ")  # the killed holder's name stays
    status = subprocess.run([*CLI, "status", str(run_dir), "--json"], capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)["lock"]["state"] == "stale", status.stderr
    table = subprocess.run([*CLI, "status", str(run_dir)], capture_output=True, text=True, timeout=120).stdout
    assert "stale lock" in table and "evoforge resume" in table

"""The record's schema version: a record is stamped when opened for writing (after what an older one lacks is added),
an older record from before versions were kept is upgraded and stamped, and a record written by a newer evoforge is
refused with a message that says what to do, instead of being misread."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from recordfactory import make_record

from evoforge.errors import RunError
from evoforge.memory.record import Record
from evoforge.memory.tables import SCHEMA_VERSION


def _versions(run_dir: Path) -> list[int]:
    with sqlite3.connect(run_dir / "record.db") as db:
        return [row[0] for row in db.execute("SELECT version FROM schema_version")]


def test_a_record_is_stamped_and_an_old_one_upgraded(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_record(run_dir)
    assert _versions(run_dir) == [SCHEMA_VERSION]
    with sqlite3.connect(run_dir / "record.db") as db:  # as a record made before versions and champions were kept
        db.execute("DROP TABLE schema_version")
        db.execute("DROP TABLE champion_decisions")
    with Record.for_run_dir(run_dir, read_only=True) as reader:  # reading an old record changes nothing
        assert reader.champion() is None and len(reader.trials()) > 0
    with sqlite3.connect(run_dir / "record.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "schema_version" not in tables
    Record.for_run_dir(run_dir).close()  # opened for writing: upgraded, then stamped
    assert _versions(run_dir) == [SCHEMA_VERSION]
    with Record.for_run_dir(run_dir) as record:
        assert record.champion_decisions() == []


def test_a_record_from_a_newer_evoforge_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_record(run_dir)
    with sqlite3.connect(run_dir / "record.db") as db:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    for read_only in (False, True):
        with pytest.raises(RunError, match=rf"newer evoforge \(schema version {SCHEMA_VERSION + 1}; this one reads "
                                           rf"up to {SCHEMA_VERSION}\): upgrade evoforge"):
            Record.for_run_dir(run_dir, read_only=read_only)
    status = subprocess.run([sys.executable, "-m", "evoforge.cli", "status", str(run_dir)], capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 2 and "upgrade evoforge" in status.stderr and "Traceback" not in status.stderr

"""`evoforge knowledge` end to end, in a subprocess: add, search, list, show, export, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {key: value for key, value in os.environ.items() if key != "EVOFORGE_KB"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "evoforge.cli_knowledge", *args], capture_output=True, text=True,
                          timeout=120, env=full_env, check=False)


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "notes.md").write_text("# Corners first\nkind: heuristic\nPlace circles in the corners first.\n\n"
                                     "# Sourdough\nBake the bread at 220 degrees.\n")
    (folder / "lessons.jsonl").write_text(json.dumps({"kind": "lesson", "title": "Rescale radii",
                                                      "content": "Radii must shrink as n grows."}) + "\n")
    return folder


def test_cli_round_trip(tmp_path: Path, seeds: Path) -> None:
    kb = str(tmp_path / "kb.db")
    added = _cli("add", str(seeds), "--kb", kb)
    assert added.returncode == 0, added.stderr
    assert "imported 3 items (3 new, 0 already present)" in added.stdout
    again = _cli("add", str(seeds), env={"EVOFORGE_KB": kb})
    assert "(0 new, 3 already present)" in again.stdout

    found = _cli("search", "bake bread", "--kb", kb, "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["title"] == "Sourdough" and hits[0]["lexical_rank"] == 1 and len(hits) == 2
    table = _cli("search", "circles in corners", "--kb", kb)
    assert "Corners first" in table.stdout and "retrieval:" in table.stdout

    listed = json.loads(_cli("list", "--kb", kb, "--json", "--kind", "lesson").stdout)
    assert [row["title"] for row in listed] == ["Rescale radii"]
    shown = _cli("show", str(hits[0]["id"]), "--kb", kb)
    assert "Bake the bread at 220 degrees." in shown.stdout and "notes.md" in shown.stdout

    dump = tmp_path / "dump.jsonl"
    assert _cli("export", "--kb", kb, "-o", str(dump)).returncode == 0
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert {row["title"] for row in rows} == {"Corners first", "Sourdough", "Rescale radii"}
    copy = str(tmp_path / "copy.db")
    assert _cli("add", str(dump), "--kb", copy).returncode == 0
    assert _cli("export", "--kb", copy).stdout.count("\n") == 3


def test_cli_errors_are_one_line(tmp_path: Path, seeds: Path) -> None:
    no_kb = _cli("list")
    assert no_kb.returncode == 2 and "pass --kb PATH" in no_kb.stderr and no_kb.stderr.count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "a", "content": "b"}\n{oops}\n')
    kb = str(tmp_path / "kb.db")
    failed = _cli("add", str(seeds), str(bad), "--kb", kb)
    assert failed.returncode == 2 and f"{bad}:2: invalid JSON" in failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert json.loads(_cli("list", "--kb", kb, "--json").stdout) == []  # nothing half-imported
    missing = _cli("show", "42", "--kb", kb)
    assert missing.returncode == 2 and "no knowledge item #42" in missing.stderr
    assert _cli("search", "x", "--kb", kb, "--kind", "rumour").returncode == 2

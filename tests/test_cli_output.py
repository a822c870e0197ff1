"""What the read-only commands print when their output is piped (as in CI, a pager or a test): every line whole,
never hard-wrapped at 80 columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from recordfactory import LONG_LINE, make_record

CLI = [sys.executable, "-m", "evoforge.cli"]


def evoforge(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_record(tmp_path_factory.mktemp("out") / "run")


def test_errors_are_one_whole_line_whatever_the_path_length(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    missing = evoforge("status", str(deep), code=2)
    assert missing.stderr.count("\n") == 1, missing.stderr
    assert f"no record at {deep.resolve() / 'record.db'}: is this a run directory?" in missing.stderr


def test_piped_diff_keeps_long_lines_whole(run_dir: Path) -> None:
    shown = evoforge("show", str(run_dir), "2").stdout
    assert f"+{LONG_LINE}\n" in shown


def test_piped_status_rows_are_not_wrapped(run_dir: Path) -> None:
    table = evoforge("status", str(run_dir)).stdout
    row = next(line for line in table.splitlines() if "model fake-model" in line)
    assert "improved on their parent" in row  # one row, one line


def test_piped_usage_errors_are_plain_whole_lines() -> None:
    option = "--an-option-whose-name-is-much-longer-than-eighty-columns-" + "x" * 40
    done = evoforge("status", option, code=2)
    assert f"Error: No such option: {option}" in done.stderr.splitlines()
    assert "╭" not in done.stderr

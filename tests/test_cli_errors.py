"""Errors a user reads in one line, and the rest: bad option values name the option and the rule, a Ctrl-C at any
moment ends with one line and status 130, a bug is reported as an internal error (not as a user error), help reads
cleanly, and the reading commands start without importing the loop, the LLM clients or numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from recordfactory import make_record

from evoforge import __version__

CLI = [sys.executable, "-m", "evoforge"]
HEAVY = ("numpy", "openai", "anthropic", "evoforge.loop", "evoforge.state", "evoforge.experiment.engineer",
         "evoforge.experiment.sandbox", "evoforge.llm", "evoforge.runs", "evoforge.research", "evoforge.analysis",
         "evoforge.task", "evoforge.memory.sampling", "evoforge.memory.cognition")


def evoforge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def in_process(prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The entry point in a fresh interpreter after `prelude` (a fault or an interrupt planted for the test)."""
    code = textwrap.dedent(prelude) + "\nfrom evoforge.__main__ import main\nraise SystemExit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", "import sys\n" + code, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_record(tmp_path_factory.mktemp("errors") / "run")


@pytest.mark.parametrize(("option", "rule"), [("--trials", "greater than or equal to 1"),
                                              ("--concurrency", "greater than or equal to 1")])
def test_a_bad_option_value_is_one_line_naming_the_option_and_the_rule(tmp_path: Path, option: str,
                                                                       rule: str) -> None:
    done = evoforge("run", str(tmp_path), option, "0")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{option} 0: must be {rule}" in done.stderr
    assert "http" not in done.stderr and "validation error" not in done.stderr


# A real SIGINT, delivered while the named module is being imported (as a user's Ctrl-C can be).
INTERRUPT_ON_IMPORT = """
import os, signal
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
"""


@pytest.mark.parametrize("module", ["typer", "evoforge.cli_common", "evoforge.views"])
def test_ctrl_c_at_any_moment_is_one_line_and_status_130(run_dir: Path, module: str) -> None:
    done = in_process(INTERRUPT_ON_IMPORT.format(module=module), "status", str(run_dir))
    assert done.returncode == 130, done.stdout + done.stderr
    assert done.stderr == "interrupted (Ctrl-C)\n"


def test_a_bug_is_an_internal_error_with_a_short_traceback(run_dir: Path) -> None:
    fault = """
    import evoforge.views
    def broken(run_dir):
        raise ValueError("list index went wrong")  # a programming error, not the user's
    evoforge.views.run_overview = broken
    """
    done = in_process(fault, "status", str(run_dir))
    assert done.returncode == 70, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "internal error: ValueError: list index went wrong"
    assert "Traceback (most recent call last):" in lines and "in broken" in done.stderr
    assert "please report it" in lines[-1] and "error:" not in lines[0].split("internal")[0]
    debug = in_process(fault, "--debug", "status", str(run_dir))
    assert debug.returncode == 1 and debug.stderr.rstrip().endswith("ValueError: list index went wrong")


def test_help_reads_cleanly_and_version_is_printed() -> None:
    top = evoforge("--help")
    assert top.returncode == 0, top.stderr
    for internal in ("typer + rich", "EvoforgeError", "<bool>", "{run_dir}", "{task}"):
        assert internal not in top.stdout, internal
    for command in ("status", "run", "show", "knowledge"):
        usage = evoforge(command, "--help").stdout
        usage_line = next(line for line in usage.splitlines() if "Usage:" in line)
        assert "<bool>" not in usage and "{" not in usage_line, usage
    assert "Usage: evoforge status [OPTIONS] RUN_DIR" in evoforge("status", "--help").stdout
    assert "Usage: evoforge show [OPTIONS] RUN_DIR TRIAL" in evoforge("show", "--help").stdout
    assert evoforge("--version").stdout == f"evoforge {__version__}\n"


@pytest.mark.parametrize("args", [["--help"], ["status", "RUN"], ["best", "RUN"], ["show", "RUN", "2"],
                                  ["export", "RUN", "--output", "OUT"]])
def test_reading_commands_do_not_import_the_loop_llm_or_numpy(run_dir: Path, tmp_path: Path, args: list[str]) -> None:
    args = [{"RUN": str(run_dir), "OUT": str(tmp_path / "trials.jsonl")}.get(a, a) for a in args]
    report = f"\nimport atexit\natexit.register(lambda: print([m for m in {HEAVY!r} if m in sys.modules], " \
             "file=sys.stderr))\n"
    done = in_process(report, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr

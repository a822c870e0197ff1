"""The jail finds the interpreter wherever it lives: a virtualenv, the checkout, the task and the run folder each
under /tmp (which bwrap replaces with a private tmpfs), under the home folder, and given as relative paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import evoforge
from evoforge.experiment.isolation import probe

NAMESPACED = [pytest.param(m, marks=pytest.mark.skipif(probe(m) is not None, reason=f"{m}: {probe(m)}"))
              for m in ("bwrap", "unshare")]
DRIVER = textwrap.dedent(
    """\
    import asyncio, json, sys
    import evoforge
    from pathlib import Path
    from evoforge.experiment import Engineer
    from evoforge.task.loader import load_task

    task = load_task(sys.argv[1])
    outcome = asyncio.run(Engineer(task).evaluate(task.seed_program, Path(sys.argv[2])))
    print(json.dumps({"status": outcome.status.value, "score": outcome.score, "error": outcome.error_message,
                      "package": str(Path(evoforge.__file__).resolve().parents[1])}))
    """
)


def cheap_venv(where: Path) -> Path:
    """A virtualenv without pip whose .pth lends it this test's packages; returns its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(purelib) / "lent.pth").write_text(f"{where.parent / 'checkout'}\n{sysconfig.get_paths()['purelib']}\n")
    return python


def lay_out(base: Path) -> None:
    """base/checkout (a copy of the package), base/venv, base/task and base/run."""
    package = Path(evoforge.__file__).parent
    shutil.copytree(package, base / "checkout" / "evoforge", ignore=shutil.ignore_patterns("__pycache__"))
    cheap_venv(base / "venv")
    task = base / "task"
    task.mkdir()
    (task / "problem.md").write_text("return 3\n")
    (task / "program.py").write_text("VALUE = 3.0\n")
    (task / "evaluator.py").write_text("import runpy\n\ndef evaluate(path):\n"
                                       "    return {'score': runpy.run_path(path)['VALUE']}\n")
    (task / "task.yaml").write_text("name: t\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\n"
                                    "timeout_s: 60\n")
    (base / "run" / "trials").mkdir(parents=True)
    (base / "run" / "record.db").write_bytes(b"")


@pytest.fixture(params=["tmp", "home", "relative"])
def place(request: pytest.FixtureRequest) -> Iterator[tuple[Path, bool]]:
    """A fresh folder under /tmp, under the home folder, or under /tmp but reached by relative paths."""
    parent = Path.home() if request.param == "home" else Path("/tmp")
    base = Path(tempfile.mkdtemp(prefix="evoforge-jail-", dir=parent))
    try:
        yield base, request.param == "relative"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", NAMESPACED)
def test_a_virtualenv_checkout_task_and_run_anywhere_still_evaluate(place: tuple[Path, bool], mode: str) -> None:
    base, relative = place
    lay_out(base)
    with open(base / "task" / "task.yaml", "a") as fh:
        fh.write(f"limits: {{isolation: {mode}}}\n")
    (base / "driver.py").write_text(DRIVER)
    paths = ["venv/bin/python", "driver.py", "task", "run/trials/1"]
    if not relative:
        paths = [str(base / p) for p in paths]
    done = subprocess.run(paths, cwd=base, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["package"] == str((base / "checkout").resolve())
    assert {k: outcome[k] for k in ("status", "score", "error")} == {"status": "succeeded", "score": 3.0,
                                                                     "error": None}, outcome

"""What a candidate can see (issue 9 §2): under bwrap its own jail shows the system, the interpreter, the task's
public files and its own trial folder, but not the home folder, other trials, the record, secrets, or the files
the task declares `hidden` (which the evaluator still reads)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from containment import BWRAP, IN_PROCESS, assert_honest_run_goes_on, evaluate, make_task, trial_dir

from evoforge.errors import TaskError
from evoforge.models import TrialStatus
from evoforge.task.loader import load_task

EVALUATOR = """
from pathlib import Path
from evoforge.sandbox import run_candidate

def evaluate(program_path, ctx):
    answers = (Path(ctx["task_dir"]) / "data" / "test" / "answers.txt").read_text()
    run = run_candidate(program_path, function="result", timeout_s={timeout})
    seen = run.value if run.ok else {}
    return {"score": 1.0 if seen.get("guess") == answers else 0.0, **seen, "error": run.reason()}
"""
SNOOP = """
from pathlib import Path

def read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None

def result():
    targets = {TARGETS}
    seen = {name: read(path) is not None for name, path in targets.items()}
    Path("mine.txt").write_text("the trial folder is writable")
    return {"guess": read(targets["hidden"]), "public_text": read(targets["public"]), **seen}
"""


@pytest.fixture
def home_secret() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="evoforge-home-", dir=Path.home()))
    (folder / "npmrc").write_text("//registry/:_authToken=secret\n")
    try:
        yield folder / "npmrc"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def targets(tmp_path: Path, home_secret: Path) -> dict[str, str]:
    task, run = tmp_path / "task", tmp_path / "run"
    (run / "trials" / "2").mkdir(parents=True, exist_ok=True)
    (run / "trials" / "2" / "program.py").write_text("another trial's program\n")
    (task / "task.yaml").write_text("name: t\n")
    return {"hidden": str(task / "data" / "test" / "answers.txt"), "public": str(task / "data" / "public.txt"),
            "evaluator": str(task / "evaluator.py"), "task_yaml": str(task / "task.yaml"),
            "home": str(home_secret), "record": str(run / "record.db"),
            "other_trial": str(run / "trials" / "2" / "program.py"), "shadow": "/etc/shadow"}


FILES = {"data/test/answers.txt": "42\n", "data/public.txt": "public\n"}


@BWRAP
def test_the_candidates_jail_shows_public_files_only(tmp_path: Path, home_secret: Path) -> None:
    trial = trial_dir(tmp_path)
    task = make_task(tmp_path, EVALUATOR, hidden=("data/test",), files=FILES, isolation="bwrap")
    code = SNOOP.replace("{TARGETS}", repr(targets(tmp_path, home_secret)))
    out = evaluate(task, code, trial)
    assert out.status is TrialStatus.SUCCEEDED, (out.error_class, out.error_message)
    assert out.score == 0.0 and out.metrics["guess"] is None and out.metrics["public_text"] == "public\n"
    leaked = [name for name in ("hidden", "evaluator", "task_yaml", "home", "record", "other_trial", "shadow")
              if out.metrics[name]]
    assert leaked == [], out.metrics
    assert (trial / "mine.txt").read_text() == "the trial folder is writable"
    assert_honest_run_goes_on(make_task(tmp_path, IN_PROCESS, isolation="bwrap"), tmp_path)


@BWRAP
def test_an_in_process_candidate_sees_hidden_task_files_but_not_home_or_record(tmp_path: Path,
                                                                              home_secret: Path) -> None:
    task = make_task(tmp_path, IN_PROCESS, hidden=("data/test",), files=FILES, isolation="bwrap")
    code = SNOOP.replace("{TARGETS}", repr(targets(tmp_path, home_secret))).replace(
        "    return {", "    return {'score': 0.0, ")
    out = evaluate(task, code, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, (out.error_class, out.error_message)
    assert out.metrics["guess"] == "42\n"  # it shares the evaluator's process: the run start says so
    assert [n for n in ("home", "record", "other_trial", "shadow") if out.metrics[n]] == [], out.metrics


@pytest.mark.parametrize(("hidden", "message"), [("../elsewhere", "is not inside the task folder"),
                                                  ("data/nope", "'data/nope' not found")])
def test_hidden_paths_must_lie_inside_the_task_folder(tmp_path: Path, hidden: str, message: str) -> None:
    task = make_task(tmp_path, files=FILES)
    (tmp_path / "elsewhere").mkdir()
    (task.root / "task.yaml").write_text("name: t\nproblem: problem.md\nprogram: program.py\n"
                                         f"evaluator: evaluator.py\nhidden: [data/test, {hidden}]\n")
    with pytest.raises(TaskError, match=f"task.yaml: field 'hidden.1': .*{message}"):
        load_task(task.root)
    (task.root / "task.yaml").write_text("name: t\nproblem: problem.md\nprogram: program.py\n"
                                         "evaluator: evaluator.py\nhidden: [data/test/]\n")
    loaded = load_task(task.root)
    assert loaded.private_paths == (task.root / "task.yaml", task.root / "evaluator.py", task.root / "data" / "test")

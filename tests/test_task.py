"""Tests of the task folder loader, the task snapshot and the starter task written by `evoforge init`."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import task_folder

from evoforge.errors import TaskError
from evoforge.experiment import Engineer
from evoforge.models import Direction, TrialStatus
from evoforge.task.loader import load_task, task_snapshot
from evoforge.task.template import STARTER_FILES, write_starter_task

ROOT = Path(__file__).resolve().parents[1]
GOOD_YAML = "name: demo\nproblem: problem.md\nprogram: initial_program.py\nevaluator: evaluator.py\n"
GOOD_EVALUATOR = "def evaluate(program_path):\n    return {'score': 1.0}\n"


def make_task(folder: Path, yaml_text: str = GOOD_YAML, evaluator: str | None = GOOD_EVALUATOR) -> Path:
    files = {"problem.md": "Maximize the score.\n", "initial_program.py": "X = 1.0\n"}
    return task_folder(folder, task_yaml=yaml_text, files=files | ({"evaluator.py": evaluator} if evaluator else {}))


def load_error(path: Path) -> str:
    with pytest.raises(TaskError) as info:
        load_task(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_loads_a_good_task_from_folder_or_yaml(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "demo")
    for path in (folder, folder / "task.yaml", str(folder)):
        task = load_task(path)
        assert task.root == folder.resolve()
        assert task.config.name == "demo"
        assert task.problem_text == "Maximize the score.\n"
        assert task.seed_program == "X = 1.0\n"
        assert task.program_name == "initial_program.py"
        assert task.evaluator_path == (folder / "evaluator.py").resolve()
        assert task.config.objective.direction is Direction.MAXIMIZE


def test_missing_task_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    message = load_error(tmp_path / "x")
    assert message.startswith(f"{tmp_path / 'x'}: no task.yaml, and not a task layout evoforge knows: looked for "
                              "task.yaml (evoforge)")
    assert "task.yaml: no such file" in load_error(tmp_path / "absent")


def test_bad_field_value_names_field_and_input(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", GOOD_YAML + "timeout_s: soon\n")
    message = load_error(folder)
    assert message.startswith(f"{folder / 'task.yaml'}: field 'timeout_s': expected a valid number")
    assert message.endswith("got 'soon'")


def test_nested_bad_value_joins_location(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", GOOD_YAML + "objective:\n  direction: upward\n")
    message = load_error(folder)
    expected = "task.yaml: field 'objective.direction': expected 'maximize' or 'minimize', got 'upward'"
    assert expected in message


def test_unknown_field_lists_known_fields(tmp_path: Path) -> None:
    yaml_text = "name: demo\nproblem: problem.md\nprogram: initial_program.py\nevalutor: evaluator.py\n"
    message = load_error(make_task(tmp_path / "t", yaml_text))
    expected = "task.yaml: unknown field 'evalutor' (known: name, problem, program, evaluator, command,"
    assert expected in message


def test_unknown_nested_field_lists_that_level(tmp_path: Path) -> None:
    message = load_error(make_task(tmp_path / "t", GOOD_YAML + "objective:\n  metrc: loss\n"))
    assert "task.yaml: unknown field 'objective.metrc' (known: metric, direction)" in message


def test_missing_required_field(tmp_path: Path) -> None:
    yaml_text = "problem: problem.md\nevaluator: evaluator.py\n"
    message = load_error(make_task(tmp_path / "t", yaml_text))
    assert "task.yaml: field 'program': required, but missing" in message


def test_exactly_one_of_evaluator_or_command(tmp_path: Path) -> None:
    neither = "name: demo\nproblem: problem.md\nprogram: initial_program.py\n"
    both = GOOD_YAML + "command: python run.py {program}\n"
    for text in (neither, both):
        message = load_error(make_task(tmp_path / "t", text))
        assert "task.yaml: give exactly one of 'evaluator'" in message
        assert "'command'" in message


def test_command_task_needs_no_evaluator_file(tmp_path: Path) -> None:
    text = "name: demo\nproblem: problem.md\nprogram: initial_program.py\ncommand: python s.py {program}\n"
    task = load_task(make_task(tmp_path / "t", text, evaluator=None))
    assert task.config.command == "python s.py {program}"
    assert task.evaluator_path is None


def test_missing_program_file(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t")
    (folder / "initial_program.py").unlink()
    message = load_error(folder)
    expected = f"{folder / 'task.yaml'}: field 'program': file 'initial_program.py' not found in {folder}"
    assert message == expected


def test_missing_problem_and_evaluator_and_prompts(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t")
    (folder / "problem.md").unlink()
    assert "task.yaml: field 'problem': file 'problem.md' not found" in load_error(folder)
    folder = make_task(tmp_path / "u", evaluator=None)
    assert "task.yaml: field 'evaluator': file 'evaluator.py' not found" in load_error(folder)
    folder = make_task(tmp_path / "v", GOOD_YAML + "prompts: my_prompts\n")
    assert "task.yaml: field 'prompts': folder 'my_prompts' not found" in load_error(folder)


def test_evaluator_without_evaluate_function(tmp_path: Path) -> None:
    nested = "class Scorer:\n    def evaluate(self, program_path):\n        return {}\n"
    for source in ("def score(program_path):\n    return {}\n", nested, "evaluate = lambda p: {}\n"):
        folder = make_task(tmp_path / "t", evaluator=source)
        message = load_error(folder)
        assert message.startswith(f"{folder / 'evaluator.py'}: no function 'evaluate(program_path)' defined")


def test_evaluator_evaluate_without_parameters(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", evaluator="def evaluate(*, program_path=None):\n    return {}\n")
    assert "evaluator.py: function 'evaluate' takes no positional parameter" in load_error(folder)


def test_an_async_evaluator_with_extra_parameters_runs_and_scores(tmp_path: Path) -> None:
    source = ("import asyncio, runpy\n\nasync def evaluate(program_path, ctx=None, *, timeout_s=1.0):\n"
              "    await asyncio.sleep(0)\n"
              "    return {'score': runpy.run_path(program_path)['X'] * 2, 'stage': ctx['stage']}\n")
    task = load_task(make_task(tmp_path / "t", evaluator=source))
    outcome = asyncio.run(Engineer(task).evaluate("X = 1.25\n", tmp_path / "trial"))
    assert (outcome.status, outcome.score, outcome.metrics) == (TrialStatus.SUCCEEDED, 2.5, {"score": 2.5,
                                                                                          "stage": "main"})


def test_evaluator_syntax_error_gives_line(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", evaluator="import math\n\ndef evaluate(program_path:\n    return {}\n")
    message = load_error(folder)
    assert message.startswith(f"{folder / 'evaluator.py'}: syntax error at line 3: ")


def test_evaluator_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w').close()\n" + GOOD_EVALUATOR
    load_task(make_task(tmp_path / "t", evaluator=source))
    assert not marker.exists()


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", "name: demo\nproblem: [problem.md\nprogram: x\n")
    message = load_error(folder)
    assert message.startswith(f"{folder / 'task.yaml'}: YAML syntax error at line ")
    assert "line 3" in message or "line 4" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = load_error(make_task(tmp_path / "t", "- name\n- problem\n"))
    assert "task.yaml: expected a mapping of fields" in message and "got list" in message
    assert "task.yaml: the file is empty" in load_error(make_task(tmp_path / "u", "# nothing\n"))


def test_non_utf8_files_are_task_errors(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t")
    (folder / "problem.md").write_bytes(b"caf\xe9\n")
    assert "problem.md: not UTF-8 text" in load_error(folder)
    folder = make_task(tmp_path / "u")
    (folder / "evaluator.py").write_bytes(b"# \xff\n" + GOOD_EVALUATOR.encode())
    assert "evaluator.py: not UTF-8 text" in load_error(folder)


def test_relative_paths_resolve_against_the_task_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_task(tmp_path / "deep" / "t")
    monkeypatch.chdir(tmp_path)
    assert load_task(Path("deep/t")).seed_program == "X = 1.0\n"


def test_snapshot_holds_task_texts_and_prompts(tmp_path: Path) -> None:
    folder = make_task(tmp_path / "t", GOOD_YAML + "prompts: prompts\n")
    (folder / "prompts" / "sub").mkdir(parents=True)
    (folder / "prompts" / "researcher.j2").write_text("Improve {{ program }}\n", encoding="utf-8")
    (folder / "prompts" / "sub" / "repair.j2").write_text("Fix it\n", encoding="utf-8")
    (folder / "prompts" / ".hidden").write_text("no\n", encoding="utf-8")
    snapshot = task_snapshot(load_task(folder))
    assert snapshot == {
        "task.yaml": GOOD_YAML + "prompts: prompts\n",
        "problem.md": "Maximize the score.\n",
        "initial_program.py": "X = 1.0\n",
        "evaluator.py": GOOD_EVALUATOR,
        "prompts/researcher.j2": "Improve {{ program }}\n",
        "prompts/sub/repair.j2": "Fix it\n",
    }


def test_starter_task_is_written_loads_and_evaluates(tmp_path: Path) -> None:
    dest = write_starter_task(tmp_path / "new" / "starter")
    assert sorted(p.name for p in dest.iterdir()) == sorted(STARTER_FILES)
    task = load_task(dest)
    assert task.config.objective.metric == "score"
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / task.program_name).write_text(task.seed_program, encoding="utf-8")
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('evaluator', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps(module.evaluate(sys.argv[2])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(task.evaluator_path), task.program_name],
        cwd=trial,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["score"] == pytest.approx(-((0.6 - 3) ** 2) - (0.4 + 1) ** 2 + 0.5 * math.cos(2.4))
    assert result["score"] < 0.0


def test_starter_evaluator_rejects_a_broken_candidate(tmp_path: Path) -> None:
    dest = write_starter_task(tmp_path / "s")
    bad = "def solve():\n    return {'x': float('nan'), 'y': 0.0}\n"
    (tmp_path / "bad.py").write_text(bad, encoding="utf-8")
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('evaluator', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.evaluate(sys.argv[2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(dest / "evaluator.py"), str(tmp_path / "bad.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "RuntimeError: solve() must return" in done.stderr


def test_starter_refuses_a_non_empty_folder_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine\n", encoding="utf-8")
    with pytest.raises(TaskError, match="busy: folder is not empty"):
        write_starter_task(tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x\n", encoding="utf-8")
    with pytest.raises(TaskError, match="file: is a file"):
        write_starter_task(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert write_starter_task(tmp_path / "empty") == tmp_path / "empty"


def test_shipped_examples_load() -> None:
    task = load_task(ROOT / "examples" / "circle_packing")
    assert task.config.name == "circle_packing"
    assert task.config.timeout_s == 60
    assert task.config.objective.metric == "score"
    assert "2.635983" in task.problem_text
    assert set(task_snapshot(task)) == {"task.yaml", "problem.md", "initial_program.py", "evaluator.py"}

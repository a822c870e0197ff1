"""What porting a task met: `name` defaults to the folder, `problem` may be inline text, a command runs in the trial
folder, and every variable an evaluator receives is in the README's table."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from helpers import task_folder, task_object

from evoforge.errors import TaskError
from evoforge.experiment.engineer import Engineer
from evoforge.models import TrialStatus
from evoforge.task import load_task

README = Path(__file__).resolve().parents[1] / "README.md"
EVALUATOR = "def evaluate(program_path):\n    return {'score': 1.0}\n"


def test_name_defaults_to_the_folder_and_problem_may_be_inline(tmp_path: Path) -> None:
    yaml_text = ("problem: |\n  Make the score large.\n  Keep it short.\nprogram: program.py\n"
                 "evaluator: evaluator.py\n")
    folder = task_folder(tmp_path / "my-task", task_yaml=yaml_text,
                         files={"program.py": "X = 1\n", "evaluator.py": EVALUATOR})
    task = load_task(folder)
    assert task.config.name == "my-task"
    assert task.problem_text == "Make the score large.\nKeep it short.\n"
    one_line = task_folder(tmp_path / "one", task_yaml="problem: Maximise the score of X.\nprogram: program.py\n"
                           "evaluator: evaluator.py\n", files={"program.py": "X = 1\n", "evaluator.py": EVALUATOR})
    assert load_task(one_line).problem_text == "Maximise the score of X."
    bare = task_folder(tmp_path / "bare", task_yaml="problem: PROBLEM\nprogram: program.py\nevaluator: evaluator.py\n",
                       files={"PROBLEM": "From the file.\n", "program.py": "X = 1\n", "evaluator.py": EVALUATOR})
    assert load_task(bare).problem_text == "From the file.\n"  # one word naming a file of the folder: that file


def test_a_problem_naming_a_missing_file_is_still_an_error(tmp_path: Path) -> None:
    folder = task_folder(tmp_path / "t", task_yaml="problem: problm.md\nprogram: program.py\nevaluator: evaluator.py\n",
                         files={"program.py": "X = 1\n", "evaluator.py": EVALUATOR})
    with pytest.raises(TaskError, match=r"task.yaml: field 'problem': file 'problm.md' not found"):
        load_task(folder)


def test_a_command_runs_in_the_trial_folder_and_finds_the_task_by_placeholder(tmp_path: Path) -> None:
    script = 'pwd > where.txt\necho "{\\"score\\": 1, \\"prog\\": \\"$1\\"}"\n'
    task = task_object(tmp_path / "task dir", files={"eval.sh": script}, command="sh {task}/eval.sh {program}")
    out = asyncio.run(Engineer(task).evaluate("X = 1\n", tmp_path / "trial"))
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert (tmp_path / "trial" / "where.txt").read_text().strip() == str((tmp_path / "trial").resolve())
    assert out.metrics["prog"] == str((tmp_path / "trial" / "program.py").resolve())


def documented_variables() -> set[str]:
    return set(re.findall(r"^\| `([A-Z_]+)` \|", README.read_text(encoding="utf-8"), flags=re.MULTILINE))


def test_every_variable_an_evaluator_receives_is_documented(tmp_path: Path) -> None:
    documented = documented_variables()
    assert {"EVOFORGE_TRIAL_DIR", "EVOFORGE_TASK_DIR", "EVOFORGE_RESULT"} <= documented
    python = task_object(tmp_path / "py", files={"evaluator.py": (
        "import os\n\ndef evaluate(program_path):\n"
        "    return {'score': 1.0, 'names': sorted(n for n in os.environ if n.startswith('EVOFORGE_'))}\n")},
        evaluator="evaluator.py")
    command = task_object(tmp_path / "sh", command=(
        "python3 -c 'import json, os; print(json.dumps({\"score\": 1, \"names\": "
        "sorted(n for n in os.environ if n.startswith(\"EVOFORGE_\"))}))'"))
    for task in (python, command):
        out = asyncio.run(Engineer(task).evaluate("X = 1\n", tmp_path / task.root.name / "trial"))
        assert out.status is TrialStatus.SUCCEEDED, out.error_message
        received = set(out.metrics["names"])
        assert "EVOFORGE_TRIAL_DIR" in received
        assert received <= documented, json.dumps(sorted(received - documented))

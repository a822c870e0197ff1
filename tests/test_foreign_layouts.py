"""Task folders in OpenEvolve's and ASI-Evolve's layouts run as they are; `evoforge init --from` writes their
task.yaml; an unknown layout says what was looked for (fixtures: tests/fixtures/foreign/, written for these tests)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.errors import TaskError
from evoforge.experiment.engineer import Engineer
from evoforge.models import Outcome, TrialStatus
from evoforge.task import Task, load_task

FIXTURES = Path(__file__).parent / "fixtures" / "foreign"
OPENEVOLVE = FIXTURES / "openevolve_quadratic"
ASI = FIXTURES / "asi_evolve_guess"


def copy(src: Path, dest: Path) -> Path:
    return Path(shutil.copytree(src, dest))


def evaluate(task: Task, code: str, trial: Path) -> Outcome:
    return asyncio.run(Engineer(task).evaluate(code, trial))


def test_openevolve_layout_is_read_without_task_yaml() -> None:
    task = load_task(OPENEVOLVE)
    cfg = task.config
    assert (cfg.layout, cfg.name, cfg.evaluator, cfg.program) == (
        "openevolve", "openevolve_quadratic", "evaluator.py", "initial_program.py")
    assert (cfg.objective.metric, cfg.objective.direction.value, cfg.timeout_s) == ("combined_score", "maximize", 60)
    assert task.problem_text.startswith("You tune X in initial_program.py")  # config.yaml's system message
    assert cfg.stages is not None
    assert [(s.name, s.promote.min_score if s.promote else None) for s in cfg.stages] == [
        ("stage1", 0.9), ("stage2", None)]
    assert task.evaluator_path in task.private_paths  # the candidate's jail never shows the evaluator


def test_openevolve_stage_functions_result_objects_and_fitness(tmp_path: Path) -> None:
    task = load_task(OPENEVOLVE)
    seed = evaluate(task, task.seed_program, tmp_path / "seed")
    assert seed.status is TrialStatus.SUCCEEDED, seed.error_message
    assert seed.score == pytest.approx(1 / (1 + 2.5 ** 2))  # stage2's Result(...).metrics
    first, second = seed.stages
    assert first.name == "stage1" and first.metrics["combined_score"] == 1.0  # mean of runs and finite
    assert second.name == "stage2" and second.metrics["value"] == 0.5
    # stage1 of a candidate returning NaN: finite 0, OpenEvolve's fitness 0.5 < threshold 0.9: not promoted
    nan = task.seed_program.replace("return X", "return float('nan')")
    pruned = evaluate(task, nan, tmp_path / "nan")
    assert pruned.status is TrialStatus.PRUNED and [s.name for s in pruned.stages] == ["stage1"]


def test_openevolve_without_config_or_stage_functions(tmp_path: Path) -> None:
    root = copy(OPENEVOLVE, tmp_path / "plain")
    (root / "config.yaml").unlink()
    (root / "evaluator.py").write_text(
        "import runpy\n\ndef evaluate(program_path):\n"
        "    value = runpy.run_path(program_path)['run']()\n"
        "    return {'closeness': 1.0 / (1.0 + (value - 3.0) ** 2), 'ok': 1.0}\n")
    task = load_task(root)
    assert task.config.stages is None and task.config.timeout_s == 300  # OpenEvolve's default timeout
    assert "combined_score" in task.problem_text  # a default problem names the objective
    out = evaluate(task, task.seed_program, tmp_path / "trial")
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == pytest.approx((1 / (1 + 2.5 ** 2) + 1.0) / 2)  # no combined_score: the mean of the metrics


def test_asi_evolve_layout_runs_eval_sh_in_the_trial_folder(tmp_path: Path) -> None:
    task = load_task(ASI)
    cfg = task.config
    assert (cfg.layout, cfg.name, cfg.objective.metric) == ("asi-evolve", "asi_evolve_guess", "eval_score")
    assert task.problem_text.startswith("# Guess the number") and task.program_name == "code"
    out = evaluate(task, task.seed_program, tmp_path / "seed")
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == pytest.approx(1 / (1 + 5.0 ** 2)) and out.metrics["guess"] == 2.0
    assert (tmp_path / "seed" / "code").read_text() == task.seed_program
    assert (tmp_path / "seed" / "eval.log").exists()  # eval.sh wrote into its working folder: the trial's


def test_asi_evolve_success_false_fails_the_trial(tmp_path: Path) -> None:
    out = evaluate(load_task(ASI), "raise SystemExit('no guess today')\n", tmp_path / "bad")
    assert out.status is TrialStatus.FAILED and out.error_class == "reported_failure"
    assert out.error_message is not None
    assert out.error_message.startswith("eval.sh reported success=false in results.json: the program failed")
    assert "no guess today" in out.error_message


def test_asi_evolve_missing_success_is_a_failure(tmp_path: Path) -> None:
    root = copy(ASI, tmp_path / "task")
    (root / "eval.sh").write_text("echo '{\"eval_score\": 5.0}' > results.json\n")
    out = evaluate(load_task(root), "print(1)\n", tmp_path / "trial")
    assert out.status is TrialStatus.FAILED and out.error_class == "reported_failure"
    assert out.error_message == "eval.sh reported no 'success' entry in results.json"


def test_unknown_layout_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskError) as err:
        load_task(tmp_path / "empty")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'empty'}: no task.yaml, and not a task layout evoforge knows")
    for looked_for in ("task.yaml (evoforge)", "initial_program.py + evaluator.py (OpenEvolve)",
                       "input.md + initial_program + eval.sh (ASI-Evolve)"):
        assert looked_for in message
    half = copy(ASI, tmp_path / "half")
    (half / "eval.sh").unlink()
    with pytest.raises(TaskError, match=r"\(found input.md and initial_program but no eval.sh\)"):
        load_task(half)
    oe = copy(OPENEVOLVE, tmp_path / "oe")
    (oe / "initial_program.py").unlink()
    with pytest.raises(TaskError, match=r"\(found evaluator.py but no initial_program.py\)"):
        load_task(oe)


@pytest.mark.parametrize("fixture", [OPENEVOLVE, ASI], ids=["openevolve", "asi-evolve"])
def test_init_from_writes_the_inferred_task_yaml(tmp_path: Path, fixture: Path) -> None:
    root = copy(fixture, tmp_path / fixture.name)
    inferred = load_task(root).config
    cli = [sys.executable, "-m", "evoforge.cli", "init", "--from", str(root)]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "task.yaml").is_file()
    assert load_task(root).config == inferred  # the written file says what the folder implied
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr


def test_asi_evolve_knowledge_list_seeds_the_run_knowledge_base(tmp_path: Path) -> None:
    import evoforge
    from evoforge.config import KnowledgeSettings, RunSettings
    from evoforge.memory.cognition import CognitionBase

    summary = evoforge.run(ASI, run_dir=tmp_path / "run", settings=RunSettings(trials=2, llm="offline"))
    assert summary.counts.get("succeeded") == 2
    base = CognitionBase.open(tmp_path / "run" / "knowledge.db", settings=KnowledgeSettings(embeddings=False))
    try:
        heuristics = base.list(kind="heuristic")
    finally:
        base.close()
    assert sorted(item.content for item in heuristics) == [
        "A program that prints nothing or crashes scores zero.",
        "The score peaks when the printed guess equals the hidden target; move GUESS in small steps."]
    assert {item.source for item in heuristics} == {"Task notes"}
    assert {item.title for item in heuristics} == {
        "A program that prints nothing or crashes scores zero",
        "The score peaks when the printed guess equals the hidden target; move GUESS i..."}


def test_init_from_a_missing_folder_or_with_nothing_says_so(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "evoforge.cli", "init"]
    missing = subprocess.run([*cli, "--from", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and f"{tmp_path / 'nope'}: no such folder" in missing.stdout + missing.stderr
    neither = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert neither.returncode != 0 and "give one of: a folder to create" in neither.stdout + neither.stderr

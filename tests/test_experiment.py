"""The Engineer end to end: real subprocesses under small task folders written by each test."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import RUN_EVALUATOR, evaluator_task, task_object, wait_until

from evoforge.experiment import Engineer
from evoforge.models import Outcome, TrialStatus
from evoforge.task.loader import Task


def make_task(tmp_path: Path, *, evaluator: str | None = RUN_EVALUATOR, command: str | None = None,
              script: str | None = None, **config: Any) -> Task:
    """A Python-evaluator task (helpers.evaluator_task), or with `command` one run by a shell `script`."""
    if command is None:
        return evaluator_task(tmp_path, evaluator=evaluator or "", **config)
    files = {"problem.md": "maximise the score\n", "program.py": "def result():\n    return {'score': 0.0}\n"}
    if script is not None:
        files["eval.sh"] = script
    return task_object(tmp_path / "task", files=files, command=command, **config)


def run_one(task: Task, code: str, trial_dir: Path, **kwargs: Any) -> Outcome:
    return asyncio.run(Engineer(task, **kwargs).evaluate(textwrap.dedent(code), trial_dir))


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_success_records_score_metrics_and_logs(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    code = """
        def result():
            print("hello from the candidate")
            return {"score": 2.5, "valid": 1, "loss": float("nan"), "name": "ok"}
    """
    out = run_one(task, code, tmp_path / "trial")
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == 2.5
    assert out.metrics == {"score": 2.5, "valid": 1, "loss": "NaN", "name": "ok"}
    assert out.error_class is None and out.seconds > 0
    assert "hello from the candidate" in out.stdout_tail
    assert "hello from the candidate" in (tmp_path / "trial" / "stdout.log").read_text()
    assert (tmp_path / "trial" / "program.py").read_text().strip().startswith("def result")


def test_ctx_is_passed_to_a_two_parameter_evaluate_and_cwd_is_the_trial(tmp_path: Path) -> None:
    evaluator = """
        import os
        from evoforge.telemetry import report

        def evaluate(program_path, ctx):
            report(step=3, loss=0.25)
            return {"score": 1, "trial": ctx["trial_dir"], "task": ctx["task_dir"], "cwd": os.getcwd()}
    """
    task = make_task(tmp_path, evaluator=evaluator)
    trial = tmp_path / "trial"
    out = run_one(task, "", trial)
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == 1.0 and isinstance(out.score, float)
    assert out.metrics["trial"] == str(trial.resolve()) == out.metrics["cwd"]
    assert out.metrics["task"] == str(task.root.resolve())
    line = json.loads((trial / "telemetry.jsonl").read_text())
    assert line["step"] == 3 and line["loss"] == 0.25 and line["t"] > 0


def test_evaluator_raising_is_a_crash_with_message_and_traceback(tmp_path: Path) -> None:
    code = """
        def result():
            raise ValueError("radius must be positive")
    """
    out = run_one(make_task(tmp_path), code, tmp_path / "trial")
    assert out.status is TrialStatus.FAILED
    assert out.error_class == "crash:ValueError"
    assert "radius must be positive" in out.error_message
    assert "in result" in out.error_message  # the last traceback lines come along


def test_missing_evaluate_is_bad_evaluator_naming_the_file(tmp_path: Path) -> None:
    task = make_task(tmp_path, evaluator="def score(path):\n    return {}\n")
    out = run_one(task, "", tmp_path / "trial")
    assert out.error_class == "bad_evaluator"
    assert "evaluator.py" in out.error_message and "evaluate" in out.error_message


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("float('nan')", "score is NaN"),
        ("float('inf')", "score is +inf"),
        ("-float('inf')", "score is -inf"),
        ("True", "score is a bool (True), expected a finite number"),
        ("'high'", "score is a str ('high'), expected a finite number"),
        ("None", "score is a NoneType (None)"),
    ],
)
def test_unusable_scores_are_bad_result(tmp_path: Path, value: str, needle: str) -> None:
    code = f"def result():\n    return {{'score': {value}, 'other': 1}}\n"
    out = run_one(make_task(tmp_path), code, tmp_path / "trial")
    assert out.status is TrialStatus.FAILED and out.score is None
    assert out.error_class == "bad_result"
    assert needle in out.error_message
    assert out.metrics.get("other") == 1


def test_missing_metric_and_non_dict_results_are_bad_result(tmp_path: Path) -> None:
    task = make_task(tmp_path, objective={"metric": "accuracy"})
    out = run_one(task, "def result():\n    return {'score': 1, 'loss': 2}\n", tmp_path / "t1")
    assert out.error_class == "bad_result"
    assert out.error_message == "metric 'accuracy' missing from result: got keys ['loss', 'score']"
    out = run_one(task, "def result():\n    return [1, 2]\n", tmp_path / "t2")
    assert out.error_class == "bad_result" and "got list" in out.error_message
    out = run_one(task, "def result():\n    return {'accuracy': object()}\n", tmp_path / "t3")
    assert out.error_class == "bad_result" and "non-JSON result" in out.error_message


DOUBLE_FORK = """
    import os, signal, sys, time

    def spawn_sleeper(pid_file):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                with open(pid_file + ".tmp", "w") as fh:
                    fh.write(str(os.getpid()))
                os.rename(pid_file + ".tmp", pid_file)
                os.execvp("sleep", ["sleep", "300"])
            os._exit(0)
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.01)

    def result():
        spawn_sleeper(os.path.join(os.environ["EVOFORGE_TRIAL_DIR"], "sleeper.pid"))
        {tail}
"""


def test_cpu_limit_kills_a_spinning_evaluator(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=20, limits={"cpu_s": 1})
    out = run_one(task, "def result():\n    while True:\n        pass\n", tmp_path / "trial")
    assert out.error_class == "killed_by_limit"
    assert "cpu_s=1" in out.error_message  # the CPU limit, not the 20 s timeout, ended it


def test_command_result_from_last_json_stdout_line(tmp_path: Path) -> None:
    script = """
        echo '{"score": 0.1}'
        echo "program is $1"
        echo '{"score": 7, "steps": 3}'
        echo 'done'
    """
    task = make_task(tmp_path, command="bash {task}/eval.sh {program}", script=script)
    trial = tmp_path / "trial with space"
    out = run_one(task, "print(1)\n", trial)
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == 7.0 and out.metrics == {"score": 7, "steps": 3}
    assert f"program is {trial.resolve() / 'program.py'}" in out.stdout_tail


def test_command_result_from_evoforge_result_file_wins(tmp_path: Path) -> None:
    script = """
        test -f "$1" || exit 9
        test "$(pwd)" = "$EVOFORGE_TRIAL_DIR" || exit 8
        echo '{"score": 1}'
        printf '{"score": 42.5, "source": "file"}' > "$EVOFORGE_RESULT"
    """
    task = make_task(tmp_path, command="sh {task}/eval.sh {program}", script=script)
    out = run_one(task, "", tmp_path / "trial")
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.score == 42.5 and out.metrics["source"] == "file"


def test_command_failures_are_classified(tmp_path: Path) -> None:
    task = make_task(tmp_path, command="echo oops >&2; exit 3")
    out = run_one(task, "", tmp_path / "t1")
    assert out.error_class == "exit:3" and "oops" in out.error_message
    task = make_task(tmp_path, command="echo '{\"step\": 1}'; exit 4")
    out = run_one(task, "", tmp_path / "t4")
    assert out.error_class == "exit:4"
    task = make_task(tmp_path, command="sleep 0.01; kill -KILL $$")
    out = run_one(task, "", tmp_path / "t5")
    assert out.error_class == "killed_by_limit" and "SIGKILL" in out.error_message
    task = make_task(tmp_path, command="echo no json here")
    out = run_one(task, "", tmp_path / "t2")
    assert out.error_class == "bad_result" and "no JSON object line" in out.error_message
    task = make_task(tmp_path, command="echo '{\"score\": 1}'; kill -XCPU $$")
    out = run_one(task, "", tmp_path / "t3")
    assert out.status is TrialStatus.SUCCEEDED  # a result was reported before the shell died


def test_secrets_are_scrubbed_from_the_child_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = ("FOO_API_KEY", "MY_TOKEN", "DB_PASSWORD", "OPENAI_BASE_URL", "EVOFORGE_LLM_MODEL",
              "KEEP_SECRET")
    for name in hidden:
        monkeypatch.setenv(name, "hidden")
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    evaluator = """
        import os
        import evoforge.telemetry

        def evaluate(program_path):
            names = ("FOO_API_KEY", "MY_TOKEN", "DB_PASSWORD", "OPENAI_BASE_URL", "EVOFORGE_LLM_MODEL",
                     "KEEP_SECRET", "PLAIN_SETTING")
            seen = {n: os.environ.get(n) for n in names}
            return {"score": 1, **seen, "telemetry": os.environ.get("EVOFORGE_TELEMETRY")}
    """
    task = make_task(tmp_path, evaluator=evaluator)
    out = run_one(task, "", tmp_path / "trial", env_passthrough=["KEEP_SECRET"])
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    for name in ("FOO_API_KEY", "MY_TOKEN", "DB_PASSWORD", "OPENAI_BASE_URL", "EVOFORGE_LLM_MODEL"):
        assert out.metrics[name] is None, name
    assert out.metrics["KEEP_SECRET"] == "hidden" and out.metrics["PLAIN_SETTING"] == "visible"
    assert out.metrics["telemetry"] == str((tmp_path / "trial").resolve() / "telemetry.jsonl")


def test_huge_output_is_capped_and_the_trial_still_scores(tmp_path: Path) -> None:
    cap = 200_000
    task = make_task(tmp_path, limits={"output_bytes": cap})
    code = """
        import sys

        def result():
            chunk = b"x" * (1 << 20)
            for _ in range(100):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.write(b"\\nLAST LINE\\n")
            sys.stdout.flush()
            sys.stderr.write("e" * 3_000_000)
            return {"score": 1.0}
    """
    out = run_one(task, code, tmp_path / "trial")
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    for name in ("stdout.log", "stderr.log"):
        size = (tmp_path / "trial" / name).stat().st_size
        assert 0.9 * cap < size <= cap, (name, size)
    log = (tmp_path / "trial" / "stdout.log").read_bytes()
    assert log.endswith(b"LAST LINE\n") and b"the middle was dropped" in log
    assert out.stdout_tail.endswith("LAST LINE\n") and len(out.stdout_tail) <= 2048


OVERLAP = """
    import os, time

    def result():
        here = os.environ["EVOFORGE_TRIAL_DIR"]
        open(os.path.join(here, "started"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(here, "go")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"score": float(os.path.exists(os.path.join(here, "go")))}
"""


def test_two_evaluations_overlap_in_one_event_loop(tmp_path: Path) -> None:
    # each candidate waits (60 s at most) for a "go" that the test gives only once both have started: run one
    # after the other, the first would never see it and score 0
    task = make_task(tmp_path, timeout_s=120)
    engineer = Engineer(task)
    trials = [tmp_path / f"t{i}" for i in range(2)]

    async def both() -> list[Outcome]:
        jobs = [asyncio.ensure_future(engineer.evaluate(textwrap.dedent(OVERLAP), t)) for t in trials]
        started = await asyncio.to_thread(wait_until, lambda: all((t / "started").exists() for t in trials), 90)
        for t in trials:
            (t / "go").touch()
        outcomes = list(await asyncio.gather(*jobs))
        assert started, "the two evaluations never ran at the same time"
        return outcomes

    outcomes = asyncio.run(both())
    assert [(o.status, o.score) for o in outcomes] == [(TrialStatus.SUCCEEDED, 1.0)] * 2, outcomes


def test_cancelling_an_evaluation_kills_its_processes(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=60, limits={"isolation": "none", "network": True})
    code = DOUBLE_FORK.replace("{tail}", "print('waiting', flush=True); time.sleep(60)")
    pid_file, log = tmp_path / "trial" / "sleeper.pid", tmp_path / "trial" / "stdout.log"

    def printed() -> bool:
        return pid_file.exists() and log.exists() and log.read_bytes() == b"waiting\n"

    async def cancel_midway() -> None:
        job = asyncio.ensure_future(Engineer(task).evaluate(textwrap.dedent(code), tmp_path / "trial"))
        deadline = time.monotonic() + 60
        while not printed() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(cancel_midway())
    assert gone(int(pid_file.read_text()))
    assert log.read_bytes() == b"waiting\n"  # what it printed before the cancel is kept

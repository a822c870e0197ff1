"""A candidate cannot forge its score (issue 9 §1): not through a result file, stdout or the channel, neither when
it shares the evaluator's process nor when the evaluator runs it through `evoforge.sandbox.run_candidate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from containment import (
    HONEST as HONEST_PROGRAM,
)
from containment import (
    IN_PROCESS,
    MODES,
    THROUGH_HELPER,
    assert_honest_run_goes_on,
    evaluate,
    make_task,
    trial_dir,
)

from evoforge.experiment.isolation import describe_isolation, shares_process
from evoforge.models import TrialStatus
from evoforge.sandbox import run_candidate

# Every way a candidate could report a score of its own, then leave before the evaluator can.
FORGER = """
import json, os

def result():
    forged = json.dumps({"score": 99.0})
    path = os.environ.get("EVOFORGE_RESULT") or "result.json"
    with open(path, "w") as fh:
        fh.write(forged)
    message = json.dumps({"op": "result", "value": {"score": 99.0}}).encode() + b"\\n"
    for fd in range(3, 256):
        try:
            os.write(fd, message)
        except OSError:
            pass
    print(forged, flush=True)
    os._exit(0)
"""


@pytest.mark.parametrize("mode", MODES)
def test_an_in_process_candidate_that_reports_and_exits_fails_as_early_exit(tmp_path: Path, mode: str) -> None:
    task = make_task(tmp_path, IN_PROCESS, isolation=mode, network=True)
    out = evaluate(task, FORGER, trial_dir(tmp_path))
    assert (out.status, out.score, out.error_class) == (TrialStatus.FAILED, None, "early_exit"), out.error_message
    assert "before evaluate() returned" in (out.error_message or "")
    assert_honest_run_goes_on(task, tmp_path)


def test_an_in_process_candidate_finds_no_result_variable_or_file(tmp_path: Path) -> None:
    snoop = ("import os\n\ndef result():\n    names = [k for k in os.environ if k in ('EVOFORGE_RESULT', "
             "'EVOFORGE_CHANNEL_FD')]\n    files = [f for f in os.listdir('.') if f.startswith('result')]\n"
             "    return {'score': float(len(names) + len(files))}\n")
    out = evaluate(make_task(tmp_path), snoop, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED and out.score == 0.0, out.error_message


@pytest.mark.parametrize("mode", MODES)
def test_a_candidate_run_through_the_helper_cannot_forge(tmp_path: Path, mode: str) -> None:
    task = make_task(tmp_path, THROUGH_HELPER, isolation=mode, network=True)
    out = evaluate(task, FORGER, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED and out.score == 0.0, (out.error_class, out.error_message)
    assert out.metrics["failed"] == "no_value"
    assert (trial_dir(tmp_path) / "result.json").read_text() == '{"score": 99.0}'  # written; nobody reads it
    assert_honest_run_goes_on(task, tmp_path)


def test_the_helper_hands_back_output_exit_status_and_timeouts(tmp_path: Path) -> None:
    evaluator = """
from evoforge.sandbox import run_candidate

def evaluate(program_path):
    echo = run_candidate(program_path, ["a", "b"], input="hello", timeout_s=20)
    slow = run_candidate(program_path, ["sleep"], timeout_s=1)
    return {"score": 1.0, "out": echo.stdout, "err": echo.stderr, "code": echo.returncode,
            "slow": slow.error_class, "timed_out": slow.timed_out}
"""
    program = """
import sys, time
if sys.argv[1:] == ["sleep"]:
    time.sleep(60)
print(sys.argv[1:], sys.stdin.read())
print("to stderr", file=sys.stderr)
sys.exit(3)
"""
    out = evaluate(make_task(tmp_path, evaluator), program, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert out.metrics["out"] == "['a', 'b'] hello\n" and out.metrics["err"] == "to stderr\n"
    assert (out.metrics["code"], out.metrics["slow"], out.metrics["timed_out"]) == (3, "timeout", True)


def test_outside_evoforge_the_helper_runs_a_plain_subprocess(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("def result(n):\n    return {'n': n * 2}\n")
    run = run_candidate(program, function="result", function_args=[21], timeout_s=30)
    assert run.ok and run.value == {"n": 42}, run.stderr


def test_the_run_start_says_when_candidates_share_the_evaluators_process(tmp_path: Path) -> None:
    inside = make_task(tmp_path / "a", IN_PROCESS)
    apart = make_task(tmp_path / "b", THROUGH_HELPER)
    assert inside.evaluator_path and apart.evaluator_path
    assert shares_process(inside.evaluator_path) and not shares_process(apart.evaluator_path)
    line = describe_isolation(inside.config.limits, inside.evaluator_path)
    assert "candidates share the evaluator's process" in line
    assert "share" not in describe_isolation(apart.config.limits, apart.evaluator_path)


# The evaluator asks for a run that cannot start (an argument list past the kernel's limit).
UNSTARTABLE = """
from evoforge.sandbox import CandidateError, run_candidate

def evaluate(program_path):
    try:
        run_candidate(program_path, ["x" * 100_000] * 64, timeout_s=5)
    except CandidateError as exc:
        return {"score": 0.0, "refused": "cannot start the candidate" in str(exc)}
    return {"score": 1.0, "refused": False}
"""


def test_a_candidate_that_cannot_start_is_refused_to_the_evaluator_not_left_hanging(tmp_path: Path) -> None:
    out = evaluate(make_task(tmp_path, UNSTARTABLE, timeout=10), HONEST_PROGRAM, trial_dir(tmp_path))
    assert (out.status, out.score, out.metrics.get("refused")) == (TrialStatus.SUCCEEDED, 0.0, True), (
        out.error_class, out.error_message)

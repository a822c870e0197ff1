"""The Engineer with gates, end to end: real evaluator subprocesses that stream telemetry and get pruned mid-run."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import evaluator_task, task_object

from evoforge.config import Limits
from evoforge.experiment import Engineer
from evoforge.experiment.gates import program_fingerprint
from evoforge.experiment.sandbox import SandboxResult, child_env, run_sandboxed
from evoforge.models import Curve, EvaluationHistory, Outcome, Trial, TrialStatus
from evoforge.task.loader import Task

# A training-like evaluator: the candidate sets START, SLOPE and STEPS; each step reports the loss and sleeps.
TRAINING = """
import math
import runpy
import time

from evoforge.telemetry import report

def evaluate(program_path, ctx):
    p = runpy.run_path(program_path)
    steps = ctx["stage_args"].get("steps", p.get("STEPS", 40))
    loss = p["START"]
    for step in range(steps):
        loss = loss + p["SLOPE"] if not math.isnan(p["SLOPE"]) else float("nan")
        report(step=step, loss=loss)
        time.sleep(p.get("DT", 0.05))
    return {"score": -loss, "loss": loss, "stage": ctx["stage"], "steps": steps}
"""


def make_task(tmp_path: Path, *, evaluator: str = TRAINING, **config: Any) -> Task:
    return evaluator_task(tmp_path, evaluator=evaluator, **config)


def evaluate(task: Task, code: str, trial_dir: Path, history: EvaluationHistory | None = None) -> tuple[Outcome,
                                                                                                          float]:
    start = time.monotonic()
    out = asyncio.run(Engineer(task).evaluate(textwrap.dedent(code), trial_dir, history))
    return out, time.monotonic() - start


def flat(value: float, steps: int = 100) -> Curve:
    return tuple((s, value, 0.05 * s) for s in range(steps))


def test_a_diverging_run_is_pruned_mid_run(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=60, gates={"median": {"metric": "loss", "warmup_steps": 5}})
    history = EvaluationHistory(curves={"main": {"loss": [flat(1.0), flat(0.9), flat(1.1)]}}, full_seconds=[30.0])
    code = "START = 1.0\nSLOPE = 0.5\nSTEPS = 600\n"  # natural runtime: 600 x 0.05 s = 30 s
    out, _ = evaluate(task, code, tmp_path / "trial", history)
    assert out.status is TrialStatus.PRUNED, (out.error_class, out.error_message, out.stderr_tail)
    assert out.error_class == "pruned:median" and out.score is None
    assert out.error_message is not None and out.error_message.startswith("stage 'main': loss best")
    assert out.seconds < 30.0 and out.seconds_saved == 30.0 - out.seconds  # stopped well before its end
    prune = [d for d in out.decisions if d.action == "prune"]
    assert len(prune) == 1 and prune[0].evidence["step"] >= 5 and prune[0].evidence["reference"] == 1.0
    steps = [p.step for p in out.telemetry if p.name == "loss"]
    assert steps[:6] == [0, 1, 2, 3, 4, 5] and max(s or 0 for s in steps) < 599  # mid-run: never the last step
    assert {p.stage for p in out.telemetry} == {"main"}
    assert [s.status for s in out.stages] == [TrialStatus.PRUNED]


def test_the_same_run_without_gates_completes(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=60)
    history = EvaluationHistory(curves={"main": {"loss": [flat(1.0)] * 3}})
    out, _ = evaluate(task, "START = 1.0\nSLOPE = 0.5\nSTEPS = 10\nDT = 0.01\n", tmp_path / "trial", history)
    assert out.status is TrialStatus.SUCCEEDED and out.score == -6.0 and out.metrics["stage"] == "main"
    assert len(out.telemetry) == 10 and out.decisions == () and out.seconds_saved == 0.0


def test_a_nan_report_prunes_at_once(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=60)
    out, _ = evaluate(task, "START = 1.0\nSLOPE = float('nan')\nSTEPS = 600\n", tmp_path / "trial")
    assert out.status is TrialStatus.PRUNED and out.error_class == "pruned:anomaly"
    assert out.error_message == "stage 'main': loss is NaN at step 0"
    assert out.seconds < 30.0 and max(p.step or 0 for p in out.telemetry) < 599  # at once: not a 30 s run
    assert out.seconds_saved == 0.0  # no history: nothing to estimate savings from


def test_a_suspiciously_good_value_marks_the_trial_suspect(tmp_path: Path) -> None:
    task = make_task(tmp_path, timeout_s=60, gates={"anomaly": {"suspicious": {"loss": {"below": 1.2}}}})
    out, _ = evaluate(task, "START = 2.0\nSLOPE = -0.125\nSTEPS = 12\nDT = 0.01\n", tmp_path / "trial")
    assert out.status is TrialStatus.SUCCEEDED and out.suspect
    flags = [d for d in out.decisions if d.action == "flag"]
    assert len(flags) == 1 and flags[0].evidence["step"] == 6 and flags[0].evidence["reference"] == 1.2
    honest, _ = evaluate(task, "START = 2.0\nSLOPE = -0.01\nSTEPS = 5\nDT = 0.01\n", tmp_path / "t2")
    assert honest.status is TrialStatus.SUCCEEDED and not honest.suspect


def test_a_two_stage_cascade_prunes_at_stage_one(tmp_path: Path) -> None:
    stages = [{"name": "smoke", "timeout_s": 20, "promote": {"min_score": -1.5}, "args": {"steps": 3}},
              {"name": "full", "timeout_s": 60, "args": {"steps": 30}}]
    task = make_task(tmp_path, stages=stages)
    trial = tmp_path / "trial"
    out, _ = evaluate(task, "START = 1.0\nSLOPE = 0.5\nDT = 0.01\n", trial)  # smoke loss 2.5: score -2.5
    assert out.status is TrialStatus.PRUNED and out.error_class == "pruned:stage" and out.score is None
    assert out.error_message == "stage 'smoke': score -2.5 misses min_score -1.5"
    assert [(s.name, s.status, s.score) for s in out.stages] == [("smoke", TrialStatus.SUCCEEDED, -2.5)]
    assert out.stages[0].metrics["stage"] == "smoke" and out.stages[0].metrics["steps"] == 3
    assert (trial / "telemetry.smoke.jsonl").is_file() and not (trial / "telemetry.full.jsonl").exists()  # full
    assert not (trial / "stdout.full.log").exists()  # never ran
    good, _ = evaluate(task, "START = 1.0\nSLOPE = 0.01\nDT = 0.01\n", tmp_path / "t2")
    assert good.status is TrialStatus.SUCCEEDED and [s.name for s in good.stages] == ["smoke", "full"]
    assert good.metrics["stage"] == "full" and good.metrics["steps"] == 30 and good.score == pytest.approx(-1.3)
    assert [(d.stage, d.action) for d in good.decisions] == [("smoke", "promote")]
    assert {p.stage for p in good.telemetry} == {"smoke", "full"}
    assert good.seconds == sum(s.seconds for s in good.stages)


def test_a_command_evaluator_gets_the_stage(tmp_path: Path) -> None:
    script = 'echo "{\\"score\\": 1, \\"arg\\": \\"$1\\", \\"env\\": \\"$EVOFORGE_STAGE\\"}"\n'
    task = task_object(tmp_path / "task", files={"eval.sh": script}, program="program.sh",
                       command="sh {task}/eval.sh {stage} {program}",
                       stages=[{"name": "quick", "timeout_s": 60}, {"name": "full", "timeout_s": 60}])
    out = asyncio.run(Engineer(task).evaluate("true\n", tmp_path / "trial"))
    assert out.status is TrialStatus.SUCCEEDED, out.error_message
    assert [(s.metrics["arg"], s.metrics["env"]) for s in out.stages] == [("quick", "quick"), ("full", "full")]


def test_the_static_gate_rejects_before_running(tmp_path: Path) -> None:
    task = make_task(tmp_path, gates={"static": {"entry_points": ["START", "SLOPE"]}})
    trial = tmp_path / "trial"
    out, _ = evaluate(task, "START = (1.0\n", trial)
    assert out.status is TrialStatus.FAILED and out.error_class == "static:syntax" and out.seconds == 0
    assert [(d.gate, d.action) for d in out.decisions] == [("static", "reject")]
    assert not (trial / "stdout.log").exists()
    missing, _ = evaluate(task, "START = 1.0\n", tmp_path / "t2")
    assert missing.error_class == "static:entry_point" and "SLOPE" in (missing.error_message or "")


def test_a_duplicate_reuses_the_recorded_outcome(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    previous = Trial(id=7, status=TrialStatus.SUCCEEDED, code="START = 1.0  # one\n", score=-2.0,
                     metrics={"score": -2.0}, seconds=4.5)
    assert program_fingerprint(previous.code, "program.py") == program_fingerprint("START = 1.0\n", "program.py")
    out = Engineer(task).reuse(previous)
    assert out.status is TrialStatus.SUCCEEDED and out.score == -2.0 and out.reused_from == 7
    assert out.seconds == 0.0 and out.seconds_saved == 4.5
    assert out.decisions[0].gate == "duplicate" and out.decisions[0].action == "reuse"


def test_the_sandbox_stop_event_ends_the_process_group(tmp_path: Path) -> None:
    async def stopped_after(delay: float) -> tuple[SandboxResult, float]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(delay, stop.set)
        start = time.monotonic()
        run = await run_sandboxed(["/bin/sh", "-c", "sleep 300"], cwd=tmp_path, env=child_env({}), timeout_s=60,
                                  limits=Limits(), stdout_path=tmp_path / "o.log", stderr_path=tmp_path / "e.log",
                                  stop=stop)
        return run, time.monotonic() - start

    run, wall = asyncio.run(stopped_after(0.3))
    assert run.stopped and not run.timed_out and wall < 60  # the stop, not the 60 s timeout nor the 300 s sleep

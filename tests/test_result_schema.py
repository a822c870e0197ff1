"""The task's result schema (`metrics:` in task.yaml): a result missing a required metric, of the wrong type or out
of bounds fails as `bad_result` with a message naming the metric and the rule; a bad schema names its field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import evaluator_task, knob_task

from evoforge.config import MetricSpec, StageConfig
from evoforge.errors import EvoforgeError
from evoforge.experiment import Engineer
from evoforge.models import TrialStatus
from evoforge.task.loader import load_task

STAGED = """
import runpy

def evaluate(program_path, ctx):
    result = runpy.run_path(program_path)["result"]()
    if ctx["stage"] == "smoke":
        result.pop("accuracy", None)
    return result
"""


def _evaluate(tmp_path: Path, result: str, **config: object):
    task = evaluator_task(tmp_path, **config)
    code = f"def result():\n    return {result}\n"
    return asyncio.run(Engineer(task).evaluate(code, tmp_path / "trial"))


@pytest.mark.parametrize(("result", "message"), [
    ("{'score': 1.0}", "metric 'accuracy' missing from result (task.yaml metrics.accuracy requires it)"),
    ("{'score': 1.0, 'accuracy': 'high'}", "metric 'accuracy' is a str ('high'), task.yaml metrics.accuracy asks "
                                           "for a number"),
    ("{'score': 1.0, 'accuracy': True}", "metric 'accuracy' is a bool"),
    ("{'score': 1.0, 'accuracy': 1.7}", "metric 'accuracy' = 1.7 is above its max 1 (task.yaml metrics.accuracy)"),
    ("{'score': 1.0, 'accuracy': -0.1}", "metric 'accuracy' = -0.1 is below its min 0"),
    ("{'score': 1.0, 'accuracy': 0.5, 'steps': 2.5}", "metric 'steps' is a float (2.5), task.yaml metrics.steps "
                                                      "asks for a integer"),
])
def test_a_result_that_breaks_the_schema_fails_naming_the_rule(tmp_path: Path, result: str, message: str) -> None:
    outcome = _evaluate(tmp_path, result, metrics={"accuracy": MetricSpec(min=0.0, max=1.0),
                                                   "steps": MetricSpec(type="integer", required=False)})
    assert outcome.status is TrialStatus.FAILED and outcome.error_class == "bad_result"
    assert message in (outcome.error_message or "")


def test_a_result_that_keeps_the_schema_scores(tmp_path: Path) -> None:
    outcome = _evaluate(tmp_path, "{'score': 2.0, 'accuracy': 1.0, 'steps': 3, 'ok': True}",
                        metrics={"accuracy": MetricSpec(min=0.0, max=1.0), "steps": MetricSpec(type="integer"),
                                 "ok": MetricSpec(type="boolean"), "note": MetricSpec(type="string", required=False)})
    assert outcome.status is TrialStatus.SUCCEEDED and outcome.score == 2.0


def test_a_metric_can_be_required_in_some_stages_only(tmp_path: Path) -> None:
    stages = [StageConfig(name="smoke", timeout_s=30), StageConfig(name="full", timeout_s=30)]
    only_full = {"accuracy": MetricSpec(stages=["full"])}
    task = evaluator_task(tmp_path, evaluator=STAGED, stages=stages, metrics=only_full)
    code = "def result():\n    return {'score': 1.0, 'accuracy': 0.9}\n"
    assert asyncio.run(Engineer(task).evaluate(code, tmp_path / "a")).status is TrialStatus.SUCCEEDED
    everywhere = evaluator_task(tmp_path / "b", evaluator=STAGED, stages=stages, metrics={"accuracy": MetricSpec()})
    outcome = asyncio.run(Engineer(everywhere).evaluate(code, tmp_path / "b" / "trial"))
    assert outcome.status is TrialStatus.FAILED and "missing" in (outcome.error_message or "")
    assert outcome.stages[0].name == "smoke"  # it failed at the smoke stage, whose result lacks the metric


def test_a_bad_schema_names_its_field(tmp_path: Path) -> None:
    task = knob_task(tmp_path / "task", extra_yaml="metrics: {accuracy: {type: float}}\n")
    with pytest.raises(EvoforgeError, match=r"metrics\.accuracy\.type"):
        load_task(task)

"""The local executor's GPU slots: each running stage owns `gpus_per_trial` of the machine's GPUs (a fake list here:
no GPU on the test machines), sees only those in CUDA_VISIBLE_DEVICES, and a stage finding none free waits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import evaluator_task, knob_task

from evoforge.config import ExecutorConfig, RunSettings, TaskConfig
from evoforge.errors import TaskError
from evoforge.experiment import Engineer
from evoforge.experiment.executors import LocalExecutor, make_executor
from evoforge.experiment.executors.gpus import machine_gpus
from evoforge.models import TrialStatus

# Records which GPUs the stage saw and when it held them (CLOCK_MONOTONIC is one clock for every process here).
GPU_EVALUATOR = """
import json
import subprocess
import sys
import os
import time

def evaluate(program_path):
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    start = time.monotonic_ns()
    time.sleep(0.3)
    end = time.monotonic_ns()
    with open("gpu.json", "w") as fh:
        json.dump({"seen": seen, "start": start, "end": end}, fh)
    return {"score": 1.0}
"""


def _spans(task_root: Path, trial_dirs: list[Path], gpus: list[int], trials: int) -> list[dict]:
    task = evaluator_task(task_root, evaluator=GPU_EVALUATOR,
                          executor=ExecutorConfig(gpus=gpus, gpus_per_trial=1))
    engineer = Engineer(task)

    async def all_at_once() -> list:
        return await asyncio.gather(*(engineer.evaluate("X = 1\n", d) for d in trial_dirs[:trials]))

    outcomes = asyncio.run(all_at_once())
    assert [o.status for o in outcomes] == [TrialStatus.SUCCEEDED] * trials, [o.error_message for o in outcomes]
    return [json.loads((d / "gpu.json").read_text()) for d in trial_dirs[:trials]]


@pytest.mark.parametrize(("gpus", "trials"), [([0, 1], 4), ([0], 2)], ids=["4-trials-on-2-gpus", "2-trials-1-gpu"])
def test_each_running_stage_owns_its_gpu(tmp_path: Path, gpus: list[int], trials: int) -> None:
    spans = _spans(tmp_path, [tmp_path / f"trial-{i}" for i in range(trials)], gpus, trials)
    assert {s["seen"] for s in spans} == {str(g) for g in gpus}  # every stage saw exactly one id, all ids used
    for gpu in gpus:
        mine = sorted((s["start"], s["end"]) for s in spans if s["seen"] == str(gpu))
        assert all(end <= nxt_start for (_, end), (nxt_start, _) in zip(mine, mine[1:], strict=False)), mine


def test_more_gpus_per_trial_than_the_machine_has_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"executor.gpus_per_trial=2 but this machine's GPUs are 1 \(0\)"):
        make_executor(ExecutorConfig(gpus=[0], gpus_per_trial=2))
    with pytest.raises(TaskError, match="executor.gpus_per_trial=1 but this machine's GPUs are none"):
        LocalExecutor(ExecutorConfig(gpus=[], gpus_per_trial=1))


def test_the_machine_gpus_come_from_config_then_cuda_visible_devices() -> None:
    assert machine_gpus([2, "3"], environ={"CUDA_VISIBLE_DEVICES": "0"}) == ["2", "3"]
    assert machine_gpus(None, environ={"CUDA_VISIBLE_DEVICES": "1, 4"}) == ["1", "4"]
    assert machine_gpus(None, environ={"CUDA_VISIBLE_DEVICES": ""}) == []


def test_executor_config_errors_name_the_field() -> None:
    base = {"name": "t", "problem": "p", "program": "p.py", "command": "true"}
    with pytest.raises(ValueError, match=r"executor\.kind"):
        TaskConfig(**base, executor={"kind": "slurm"})
    with pytest.raises(ValueError, match=r"executor\.resources\.num_gpus"):
        TaskConfig(**base, executor={"kind": "ray", "resources": {"num_gpus": -1}})
    with pytest.raises(ValueError, match=r"executor\.resources\.colour"):
        TaskConfig(**base, executor={"kind": "ray", "resources": {"colour": 1}})
    with pytest.raises(ValueError, match="gpus_per_trial and gpus are for kind: local"):
        TaskConfig(**base, executor={"kind": "ray", "gpus_per_trial": 1})


def test_a_run_asking_for_more_gpus_than_the_machine_has_stops_before_any_record(tmp_path: Path) -> None:
    task = knob_task(tmp_path / "task", extra_yaml="executor: {gpus_per_trial: 2, gpus: [0]}\n")
    done = subprocess.run([sys.executable, "-m", "evoforge", "run", str(task), "--run-dir", str(tmp_path / "run"),
                           "--llm", "offline"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: task.yaml: executor.gpus_per_trial=2 but this machine's GPUs are 1 (0); lower gpus_per_trial, list "
        "the ids in executor.gpus, or run on a bigger node"], done.stderr
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="ray_address"):
        RunSettings(ray_address="")


def test_a_stage_with_gpu_slots_is_not_started_ahead(tmp_path: Path) -> None:
    """A stage started ahead would start before its GPUs are known: with GPU slots it starts in its turn."""
    task = evaluator_task(tmp_path, evaluator=GPU_EVALUATOR, executor=ExecutorConfig(gpus=[7], gpus_per_trial=1))
    engineer = Engineer(task)

    async def ahead_then_evaluate() -> object:
        await engineer.start_ahead("X = 1\n", tmp_path / "trial")
        assert engineer._ahead == {}
        return await engineer.evaluate("X = 1\n", tmp_path / "trial")

    outcome = asyncio.run(ahead_then_evaluate())
    assert outcome.status is TrialStatus.SUCCEEDED
    assert json.loads((tmp_path / "trial" / "gpu.json").read_text())["seen"] == "7"

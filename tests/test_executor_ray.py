"""The Ray executor on a local Ray (one per module, loopback only): a run gives the same trials as the local
executor, a gate's stop kills the remote stage's processes, a worker that dies is replaced once, and resources no
node has fail at once with a message."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM
from helpers import evaluator_task, wait_until
from raycluster import is_loopback, listening_addresses, local_ray, ray_or_skip
from taskfactory import make_task

import evoforge
from evoforge.config import ExecutorConfig, RunSettings
from evoforge.errors import TaskError
from evoforge.experiment import Engineer
from evoforge.experiment.executors.ray_executor import RayExecutor
from evoforge.experiment.executors.ray_worker import StageWorker
from evoforge.memory.record import Record
from evoforge.models import Curve, EvaluationHistory, TrialStatus

# Streams a rising loss, leaves a marked shell behind in its process group, then sleeps far past any test.
SLOW_TRAINING = """
import subprocess
import time

from evoforge.telemetry import report

def evaluate(program_path, ctx):
    marker = open(program_path).read().split("MARKER = ")[1].split()[0].strip("'")
    subprocess.Popen(["/bin/sh", "-c", f"sleep 600; : {marker}"])
    for step in range(30):
        report(step=step, loss=1.5 + 0.5 * step)
        time.sleep(0.05)
    time.sleep(600)
    return {"score": 0.0}
"""


STOPPED_WITHIN_S = 90  # under pytest-timeout's 120 s, so this message is the one shown


class CountingWorker(StageWorker):
    """Notes in the trial folder the pid of the worker that ran its stage."""

    async def run(self, job: Any) -> Any:
        (job.trial_dir / "ray-worker.pid").write_text(str(os.getpid()))
        return await super().run(job)


class CrashOnceWorker(StageWorker):
    """Its process dies on the first stage it is given (a marker file in the trial folder says it happened)."""

    async def run(self, job: Any) -> Any:
        marker = job.trial_dir / "crashed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return await super().run(job)


class AlwaysCrashWorker(StageWorker):
    async def run(self, job: Any) -> Any:
        os._exit(1)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = ray_or_skip()
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers above, in a module Ray cannot import
    with local_ray(num_cpus=2) as cluster:
        yield cluster
    del ray


def test_the_local_ray_listens_on_loopback_only(ray_cluster: Any) -> None:
    addresses = listening_addresses(os.getpid())
    assert addresses, "found no listening socket of the Ray processes"
    assert all(is_loopback(a) for a in addresses), sorted(addresses)


def _edit(body: dict[str, Any]) -> str:
    return ("NAME: nudge x\nMOTIVATION: toward 3\n"
            "<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + 0.5\n>>>>>>> REPLACE\n")


def _trials(run_dir: Path) -> list[tuple[str, str, float | None]]:
    record = Record.for_run_dir(run_dir)
    try:
        return [(t.status.value, t.code, t.score) for t in record.trials()]
    finally:
        record.close()


def test_a_run_on_ray_gives_the_local_runs_trials(ray_cluster: Any, tmp_path: Path, fake_llm: FakeLLM,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(tmp_path / "task", extra_yaml=f"llm: {{base_url: '{fake_llm.base_url}', max_retries: 0}}\n")
    fake_llm.set_handler(_edit)
    monkeypatch.setattr(RayExecutor, "actor_class", CountingWorker)
    common = {"trials": 5, "concurrency": 1, "prefetch": 0, "llm": "fake-model", "seed": 3}
    evoforge.run(task, run_dir=tmp_path / "local", settings=RunSettings(**common))
    assert not list((tmp_path / "local").rglob("ray-worker.pid"))
    evoforge.run(task, run_dir=tmp_path / "ray", settings=RunSettings(**common, ray_address="local"))
    local, remote = _trials(tmp_path / "local"), _trials(tmp_path / "ray")
    assert len(local) == 5 and all(status == "succeeded" for status, _, _ in local), local
    assert remote == local
    ran = [p.read_text() for p in (tmp_path / "ray").rglob("ray-worker.pid")]
    assert len(ran) == 5 and str(os.getpid()) not in ran  # every stage ran in a Ray worker, not here
    assert len(set(ran)) == 1  # one stage at a time: the one actor was reused, not started anew per stage


def _flat(value: float, steps: int = 100) -> Curve:
    return tuple((s, value, 0.05 * s) for s in range(steps))


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_gate_stops_the_remote_stage_and_its_processes(ray_cluster: Any, tmp_path: Path) -> None:
    task = evaluator_task(tmp_path, evaluator=SLOW_TRAINING, timeout_s=600,
                          gates={"median": {"metric": "loss", "warmup_steps": 5}},
                          executor=ExecutorConfig(kind="ray"))
    history = EvaluationHistory(curves={"main": {"loss": [_flat(1.0), _flat(0.9), _flat(1.1)]}}, full_seconds=[30.0])
    marker = f"evoforge-ray-prune-{os.getpid()}-{tmp_path.name}"
    evaluation = Engineer(task).evaluate(f"MARKER = '{marker}'\n", tmp_path / "trial", history)
    try:  # unstopped, the stage would sleep for 600 s: a generous bound on the event, not a timing
        out = asyncio.run(asyncio.wait_for(evaluation, STOPPED_WITHIN_S))
    except TimeoutError:
        pytest.fail(f"the pruned remote stage was still running after {STOPPED_WITHIN_S} s")
    assert out.status is TrialStatus.PRUNED, (out.error_class, out.error_message, out.stderr_tail)
    assert out.error_class == "pruned:median"
    steps = [p.step for p in out.telemetry if p.name == "loss"]  # streamed back from the worker while it ran
    assert steps[:6] == [0, 1, 2, 3, 4, 5]
    assert wait_until(lambda: not _running(marker), timeout_s=30), "the remote stage's shell outlived the prune"
    assert not (tmp_path / "trial" / "telemetry.jsonl.node").exists()


def test_num_gpus_on_a_cluster_without_gpus_fails_at_once(ray_cluster: Any) -> None:
    with pytest.raises(TaskError, match=r"executor.resources ask each stage for CPU: 1, GPU: 1 but no live node"):
        RayExecutor(ExecutorConfig(kind="ray", resources={"num_gpus": 1}))
    with pytest.raises(TaskError, match=r"accelerator_type:A100"):
        RayExecutor(ExecutorConfig(kind="ray", resources={"accelerator_type": "A100"}))


PLAIN = textwrap.dedent("""
    def result():
        return {"score": 2.0}
""")


def test_a_dead_worker_is_replaced_once(ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = evaluator_task(tmp_path, timeout_s=120, executor=ExecutorConfig(kind="ray"))
    monkeypatch.setattr(RayExecutor, "actor_class", CrashOnceWorker)
    out = asyncio.run(Engineer(task).evaluate(PLAIN, tmp_path / "trial"))
    assert (tmp_path / "trial" / "crashed-once").exists()  # the first worker died under the stage
    assert out.status is TrialStatus.SUCCEEDED and out.score == 2.0, (out.error_class, out.error_message)


def test_a_worker_dying_twice_fails_the_trial_as_executor_lost(ray_cluster: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    task = evaluator_task(tmp_path, timeout_s=120, executor=ExecutorConfig(kind="ray"))
    monkeypatch.setattr(RayExecutor, "actor_class", AlwaysCrashWorker)
    out = asyncio.run(Engineer(task).evaluate(PLAIN, tmp_path / "trial"))
    assert out.status is TrialStatus.FAILED and out.error_class == "executor_lost", out.error_message
    assert out.error_message is not None and "(2 attempt(s))" in out.error_message
    assert "attempt 1: " in out.error_message and "attempt 2: " in out.error_message

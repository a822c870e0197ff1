"""Executors: where a stage's evaluator runs once the Engineer has prepared it. `local` (default): the sandbox on
this machine, with GPU slots; `ray`: a node of a Ray cluster, in the same sandbox there. Chosen in task.yaml
(`executor: {kind: ray, ...}`) or by `evoforge run --ray-address`."""

from __future__ import annotations

from evoforge.config import ExecutorConfig
from evoforge.experiment.executors.base import Executor, JobResult, StageJob
from evoforge.experiment.executors.local import LocalExecutor

__all__ = ["Executor", "JobResult", "LocalExecutor", "StageJob", "make_executor"]


def make_executor(config: ExecutorConfig | None = None, *, ray_address: str | None = None,
                  concurrency: int = 2) -> Executor:
    """The executor the config names; a `ray_address` (the run's --ray-address) picks Ray whatever the kind says.
    Raises TaskError (one line) when it cannot serve the task: too few GPUs here, no Ray, no node with the
    resources."""
    config = config or ExecutorConfig()
    if ray_address is None and config.kind == "local":
        return LocalExecutor(config)
    from evoforge.experiment.executors.ray_executor import RayExecutor

    if config.kind == "local":  # --ray-address on a local task: Ray, with the task's resources
        resources = config.resources
        if config.gpus_per_trial and not resources.num_gpus:
            resources = resources.model_copy(update={"num_gpus": float(config.gpus_per_trial)})
        config = config.model_copy(update={"kind": "ray", "gpus_per_trial": 0, "gpus": None, "resources": resources})
    return RayExecutor(config, address=ray_address, concurrency=concurrency)

"""The local executor: a stage's evaluator runs in the sandbox on this machine (the default), each running stage
holding `gpus_per_trial` GPUs of its own. `run_job` is also what a Ray worker runs on its node."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket

from evoforge.config import ExecutorConfig
from evoforge.experiment.broker import Broker, candidate_env
from evoforge.experiment.broker import close as close_broker
from evoforge.experiment.executors.base import Executor, JobResult, StageJob
from evoforge.experiment.executors.gpus import GpuPool, machine_gpus
from evoforge.experiment.sandbox import run_sandboxed
from evoforge.sandbox import CHANNEL_VAR

GPU_VAR = "CUDA_VISIBLE_DEVICES"


async def run_job(job: StageJob, stop: asyncio.Event) -> JobResult:
    """Run one stage job in the sandbox here. A Python evaluator gets its channel (a socketpair) served by a broker,
    which also starts its candidate in a sandbox of its own; a command evaluator just runs."""
    sandboxed = functools.partial(run_sandboxed, limits=job.limits, stop=stop, cwd=job.cwd,
                                  timeout_s=job.timeout_s, stdout_path=job.stdout_path, stderr_path=job.stderr_path)
    if not job.harness:
        return JobResult(run=await sandboxed(job.argv, env=job.env))
    env = dict(job.env)
    ours, theirs = socket.socketpair()
    start = functools.partial(run_sandboxed, env=candidate_env(env), limits=job.limits, hidden=job.hidden)
    broker = Broker(job.trial_dir, start, job.limits.output_bytes)
    serving = asyncio.create_task(broker.serve(ours))
    try:
        env[CHANNEL_VAR] = str(theirs.fileno())
        run = await sandboxed(job.argv, env=env, pass_fds=(theirs.fileno(),), harness=True)
    finally:
        theirs.close()
        await close_broker(serving, ours)
    return JobResult(run=run, reported=broker.reported, result=broker.result, limits_hit=tuple(broker.limits_hit))


class LocalExecutor(Executor):
    """Runs stages here; with `gpus_per_trial`, each stage waits for that many free GPUs and sees only those."""

    kind = "local"

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        config = config or ExecutorConfig()
        self.pool = GpuPool(machine_gpus(config.gpus), config.gpus_per_trial) if config.gpus_per_trial else None

    async def run(self, job: StageJob, stop: asyncio.Event) -> JobResult:
        if self.pool is None:
            return await run_job(job, stop)
        async with self.pool.hold() as gpus:
            job = dataclasses.replace(job, env={**job.env, GPU_VAR: ",".join(gpus)})
            result = await run_job(job, stop)
            return dataclasses.replace(result, where={"gpus": gpus})

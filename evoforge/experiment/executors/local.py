"""The local executor: a stage's evaluator runs in the sandbox on this machine (the default), each running stage
holding `gpus_per_trial` GPUs of its own; a Python evaluator's stage runs in a warm jailed worker where it can
(warm.py). `run_job` is also what a Ray worker runs on its node (cold: a jail and an interpreter per stage)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
from dataclasses import dataclass

from evoforge.config import ExecutorConfig
from evoforge.experiment.broker import Broker, candidate_env
from evoforge.experiment.broker import close as close_broker
from evoforge.experiment.executors.base import Executor, JobResult, StageJob
from evoforge.experiment.executors.gpus import GpuPool, machine_gpus
from evoforge.experiment.sandbox import Started, run_sandboxed, start_sandboxed
from evoforge.experiment.warm import WarmPool, WarmStarted
from evoforge.sandbox import CHANNEL_VAR

GPU_VAR = "CUDA_VISIBLE_DEVICES"


@dataclass
class Prestarted:
    """A Python evaluator's stage started, its harness waiting for the channel's first line (the broker's)."""

    started: Started | WarmStarted
    broker: Broker
    channel: socket.socket  # our end; the broker serves it once the stage may go

    async def abandon(self) -> None:
        """Kill it: it will never be let go."""
        try:
            await self.started.abandon()
        finally:
            self.channel.close()


async def start_job(job: StageJob, warm: WarmPool | None = None) -> Prestarted:
    """Start a Python evaluator's stage here: the harness in its jail (in a warm worker from `warm` where it can),
    waiting for its channel's first line."""
    env = dict(job.env)
    ours, theirs = socket.socketpair()
    start = functools.partial(run_sandboxed, env=candidate_env(env), limits=job.limits, hidden=job.hidden)
    try:
        env[CHANNEL_VAR] = str(theirs.fileno())
        started: Started | WarmStarted | None = await warm.start(job, theirs) if warm is not None else None
        if started is None:
            started = await start_sandboxed(job.argv, cwd=job.cwd, env=env, limits=job.limits,
                                            stdout_path=job.stdout_path, stderr_path=job.stderr_path,
                                            pass_fds=(theirs.fileno(),), harness=True)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Prestarted(started, Broker(job.trial_dir, start, job.limits.output_bytes), ours)


async def finish_job(prestarted: Prestarted, job: StageJob, stop: asyncio.Event) -> JobResult:
    """Let a started harness go (the broker's first line) and wait for it; the broker also starts its candidate
    in a sandbox of its own on request."""
    broker = prestarted.broker
    try:
        broker.open(prestarted.channel)  # the harness goes now, not once a task of the broker's has run
        run = await prestarted.started.finish(job.timeout_s, stop)
    finally:
        await close_broker(broker, prestarted.channel)
    return JobResult(run=run, reported=broker.reported, result=broker.result, limits_hit=tuple(broker.limits_hit))


async def run_job(job: StageJob, stop: asyncio.Event, warm: WarmPool | None = None) -> JobResult:
    """Run one stage job in the sandbox here: a Python evaluator through the harness and its channel (in a warm
    worker from `warm` where it can), a command evaluator as it is."""
    if job.harness:
        return await finish_job(await start_job(job, warm), job, stop)
    run = await run_sandboxed(job.argv, cwd=job.cwd, env=job.env, timeout_s=job.timeout_s, limits=job.limits,
                              stop=stop, stdout_path=job.stdout_path, stderr_path=job.stderr_path)
    return JobResult(run=run)


class LocalExecutor(Executor):
    """Runs stages here; with `gpus_per_trial`, each stage waits for that many free GPUs and sees only those."""

    kind = "local"

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        config = config or ExecutorConfig()
        self.pool = GpuPool(machine_gpus(config.gpus), config.gpus_per_trial) if config.gpus_per_trial else None
        self.warm = WarmPool() if self.pool is None else None  # warm jailed workers; none with GPU slots

    async def start(self, job: StageJob) -> Prestarted | None:
        """A Python evaluator's stage started ahead; not with GPU slots (its GPUs are only known once it runs)."""
        if not job.harness or self.pool is not None:
            return None
        return await start_job(job, self.warm)

    async def run(self, job: StageJob, stop: asyncio.Event, started: object | None = None) -> JobResult:
        if isinstance(started, Prestarted):
            return await finish_job(started, job, stop)
        if self.pool is None:
            return await run_job(job, stop, self.warm)
        async with self.pool.hold() as gpus:
            job = dataclasses.replace(job, env={**job.env, GPU_VAR: ",".join(gpus)})
            result = await run_job(job, stop)
            return dataclasses.replace(result, where={"gpus": gpus})

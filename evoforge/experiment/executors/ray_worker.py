"""What runs on a Ray worker node for one stage: an actor that runs the stage job in the sandbox there (`run_job`,
as the local executor does), keeps its telemetry in a file of its own for the driver to fetch while it runs, and
stops the job's process group when the driver says a gate fired."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

from evoforge.experiment.executors.base import JobResult, StageJob
from evoforge.experiment.executors.local import GPU_VAR, run_job
from evoforge.telemetry import ENV_VAR as TELEMETRY_VAR

TELEMETRY_CHUNK = 1 << 20
REMOTE_SUFFIX = ".node"  # the worker's own telemetry file beside the stage's (the driver streams it back)


class StageWorker:
    """Runs stages on a worker node, one at a time (a Ray async actor: `run`, `telemetry` and `stop` are served
    concurrently)."""

    def __init__(self) -> None:
        self._stop: asyncio.Event | None = None
        self._telemetry: Path | None = None

    async def run(self, job: StageJob) -> JobResult:
        """Run `job` here; the sandbox sees this node's GPUs as Ray assigned them to this actor."""
        remote = job.telemetry_path.with_name(job.telemetry_path.name + REMOTE_SUFFIX)
        remote.unlink(missing_ok=True)
        self._telemetry, self._stop = remote, asyncio.Event()  # one actor serves one stage after another
        env = {**job.env, TELEMETRY_VAR: str(remote)}
        env.pop(GPU_VAR, None)  # the driver's devices mean nothing here
        if os.environ.get(GPU_VAR) is not None:
            env[GPU_VAR] = os.environ[GPU_VAR]
        result = await run_job(dataclasses.replace(job, env=env), self._stop)
        where = {"node": socket.gethostname(), "pid": os.getpid(), GPU_VAR: env.get(GPU_VAR)}
        return dataclasses.replace(result, where=where)

    async def telemetry(self, offset: int) -> bytes:
        """The telemetry the stage wrote from byte `offset` on (at most a chunk; empty before it starts)."""
        if self._telemetry is None:
            return b""
        try:
            with open(self._telemetry, "rb") as fh:
                fh.seek(offset)
                return fh.read(TELEMETRY_CHUNK)
        except OSError:
            return b""

    async def stop(self) -> None:
        """A gate fired: stop the stage's process group (the sandbox kills it). Ray starts an actor's calls in
        the order they were made, so the stage's `run` has begun when this comes."""
        if self._stop is not None:
            self._stop.set()

    async def finish(self) -> None:
        """Remove the worker's telemetry copy once the driver has it all."""
        if self._telemetry is not None:
            self._telemetry.unlink(missing_ok=True)

    async def ping(self) -> dict[str, Any]:
        return {"node": socket.gethostname(), "pid": os.getpid()}

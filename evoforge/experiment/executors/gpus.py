"""This machine's GPUs and the pool that gives each running stage its own: `gpus_per_trial` ids held from start to
end of a stage and set as its CUDA_VISIBLE_DEVICES, so no two stages ever share a GPU."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from evoforge.errors import TaskError

NVIDIA_SMI_TIMEOUT_S = 20.0


def machine_gpus(configured: Sequence[int | str] | None = None,
                 environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids stages may use: the config's `gpus`, else CUDA_VISIBLE_DEVICES when set, else one per line of
    `nvidia-smi -L`, else none."""
    if configured is not None:
        return [str(g) for g in configured]
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part.strip() for part in visible.split(",") if part.strip() and part.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                                check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [match.group(1) for match in re.finditer(r"^GPU (\d+):", listed, re.MULTILINE)]


class GpuPool:
    """Hands out `per_trial` GPU ids at a time; a stage that finds too few free waits for a running one's."""

    def __init__(self, gpus: Sequence[str], per_trial: int) -> None:
        if per_trial > len(gpus):
            have = f"{len(gpus)} ({', '.join(gpus)})" if gpus else "none (no CUDA_VISIBLE_DEVICES, no nvidia-smi)"
            raise TaskError(f"task.yaml: executor.gpus_per_trial={per_trial} but this machine's GPUs are {have}; "
                            f"lower gpus_per_trial, list the ids in executor.gpus, or run on a bigger node")
        self.per_trial = per_trial
        self.free = list(gpus)
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _condition(self) -> asyncio.Condition:
        """The pool's condition in the running event loop (one Engineer may serve several asyncio.run calls)."""
        loop = asyncio.get_running_loop()
        if self._changed is None or self._loop is not loop:
            self._changed, self._loop = asyncio.Condition(), loop
        return self._changed

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[list[str]]:
        """The ids of `per_trial` free GPUs, held until the block ends."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: len(self.free) >= self.per_trial)
            taken, self.free = self.free[:self.per_trial], self.free[self.per_trial:]
        try:
            yield taken
        finally:
            async with changed:
                self.free.extend(taken)
                changed.notify_all()

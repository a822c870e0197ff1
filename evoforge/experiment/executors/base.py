"""The hand-off between the Engineer and where a stage runs: one `StageJob` in, one `JobResult` out, through an
`Executor` (local: this machine's sandbox; ray: a Ray cluster's node, in the same sandbox there)."""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.config import Limits
from evoforge.experiment.sandbox import SandboxResult


@dataclass(frozen=True)
class StageJob:
    """One run of one stage's evaluator: everything needed to start it in the sandbox, anywhere (plain data)."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    timeout_s: float
    limits: Limits
    stdout_path: Path
    stderr_path: Path
    telemetry_path: Path  # where the gates read the stage's telemetry (env's EVOFORGE_TELEMETRY names it)
    result_path: Path  # a command evaluator's result file (env's EVOFORGE_RESULT)
    harness: bool  # a Python evaluator: runs through the harness and reports through the broker's channel
    trial_dir: Path
    hidden: tuple[Path, ...] = ()  # emptied in the candidate's jail (the task's private paths)
    label: str = ""  # which trial and stage, for messages
    evaluator_sha256: str | None = None  # the sealed evaluator's hash: a warm worker runs only that content


@dataclass(frozen=True)
class JobResult:
    """How a job ended: the sandbox's account, what the evaluator reported (Python evaluators), and, when the
    executor could not run it at all, why (`lost`: the worker or node died, retries included)."""

    run: SandboxResult
    reported: bool = False
    result: Any = None
    limits_hit: tuple[str, ...] = ()  # "disk_limit: reason" of the candidate's runs
    lost: str | None = None
    attempts: int = 1
    where: dict[str, Any] = field(default_factory=dict)  # e.g. the node and the GPU ids it ran on


def lost_result(reason: str, attempts: int, seconds: float = 0.0) -> JobResult:
    """The result of a job whose executor lost it (no process outcome to tell)."""
    run = SandboxResult(returncode=None, timed_out=False, seconds=seconds, stdout_tail=b"", stderr_tail=b"")
    return JobResult(run=run, lost=reason, attempts=attempts)


class Executor(abc.ABC):
    """Runs stage jobs; several `run` calls may be in flight at once in one event loop."""

    kind: str = ""

    async def start(self, job: StageJob) -> Any | None:
        """Start `job` ahead, to be let go by `run(job, stop, started)` (its `abandon()` kills it if never run),
        or None where this executor cannot (then `run` starts it)."""
        return None

    @abc.abstractmethod
    async def run(self, job: StageJob, stop: asyncio.Event, started: Any | None = None) -> JobResult:
        """Run `job` (or let go the one `start` returned) to its end; setting `stop` stops its whole process group
        (the result says stopped=True)."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the executor holds (a Ray it started stays up until the process exits)."""

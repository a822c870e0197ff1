"""Warm jailed workers: the evoforge side of a bwrap jail per evaluation slot whose PID 1 (zygote.py) forks a fresh
child per evaluation of a Python evaluator's stage, so a trial pays a fork, not bwrap and a new interpreter.

A worker's jail is laid out as the evaluator's jail of the run (same masks, read-only binds, network, devices), but
binds the run's trials folder at a staging path only its PID 1 uses; each child mounts its own trial folder, a fresh
/tmp and /dev/shm, gets IPC and UTS namespaces of its own and drops every capability before the harness runs. Between
evaluations the zygote kills every process left in the jail. A timeout, a gate's stop, a disk limit or a cancellation
ends the worker as the cold path ends a jail; the next evaluation gets a fresh one. Anything the warm path cannot do
(another isolation, a command evaluator, a worker that fails to start) takes the cold path (sandbox.start_sandboxed),
with one warning per pool. task.yaml `limits.warm_workers: false` (or EVOFORGE_WARM=0 in evoforge's environment)
turns the warm path off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from evoforge.errors import EvoforgeError
from evoforge.experiment.isolation import Jail, jail_for, runtime_paths
from evoforge.experiment.isolation import resolve as resolve_isolation
from evoforge.experiment.launch import HARNESS, TERMINATED, JailWatch, nproc_rlimit
from evoforge.experiment.sandbox import DRAIN_GRACE_S, TOKEN_VAR, SandboxResult, _CappedLog, sweep
from evoforge.experiment.waits import Ending, pump, stop_pumps
from evoforge.experiment.warm_worker import STAGING, WarmError, Worker
from evoforge.sandbox import CHANNEL_VAR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from evoforge.experiment.executors.base import StageJob

__all__ = ["STAGING", "WarmError", "WarmPool", "WarmStarted", "Worker", "plan"]
log = logging.getLogger(__name__)
SWITCH = "EVOFORGE_WARM"  # "0": every evaluation takes the cold path
CAPS = ("CAP_SYS_ADMIN", "CAP_SETPCAP")  # what the zygote keeps to build each child's jail (the child drops them)
ABANDON_WAIT_S = 2.0  # for the zygote's report on a child killed before it was let go
MAX_IDLE = 16  # idle workers kept per pool; more are ended when they come back
CHANNEL_FD = 3  # where a child finds the stage's channel


def plan(job: StageJob) -> tuple[tuple[Any, ...], Jail, dict[str, str]] | None:
    """(pool key, the worker's jail, the worker's environment) for a job the warm path can run, else None: a Python
    evaluator's stage run by this interpreter's harness under bwrap, in a trial folder whose parent is masked."""
    argv = job.argv
    if not job.limits.warm_workers or os.environ.get(SWITCH, "1") == "0":
        return None
    if not job.harness or len(argv) != 5 or argv[:3] != [sys.executable, "-m", HARNESS]:
        return None
    try:
        if resolve_isolation(job.limits.isolation, job.limits.network) != "bwrap":
            return None
    except EvoforgeError:
        return None  # the cold path says why
    trial = Path(job.env.get("EVOFORGE_TRIAL_DIR") or job.cwd)
    facts = (job.limits.network, job.env.get("EVOFORGE_TASK_DIR"), tuple(runtime_paths()), os.environ.get("HOME"))
    cacheable = job.cwd == trial and trial.is_absolute() and trial.name not in ("", ".", "..")
    cache_key = (str(trial.parent), *facts) if cacheable else None
    layout = _layouts.get(cache_key) if cache_key is not None else None
    if layout is None or os.path.islink(trial):  # a trial folder reached through a link: laid out afresh
        layout = _layout(job)
        if cache_key is not None and not os.path.islink(trial):
            if len(_layouts) >= LAYOUTS_KEPT:
                _layouts.clear()
            _layouts[cache_key] = layout
    if not layout:
        return None
    prefix, worker_jail = layout
    base = {k: v for k, v in job.env.items() if not k.startswith("EVOFORGE_")}
    return (*prefix, tuple(sorted(base.items()))), worker_jail, base


# The workers' layout of a trials folder: (pool key's first part, the worker's jail), or () where the warm path
# cannot lay it out. Worked out once per trials folder (and interpreter paths, task folder, network, HOME), not per
# stage: the jail's paths are checked on disk (is_dir/exists/resolve of every runtime path, mask and home folder),
# which is what the layout depends on besides those keys. A folder that appears or goes during the run (a secret
# path, the record file beside the trials) is thus seen only by the next run, as a warm worker, which keeps its
# jail while it lives, sees only the layout it started with anyway.
_layouts: dict[tuple[Any, ...], tuple[tuple[Any, ...], Jail] | tuple[()]] = {}
LAYOUTS_KEPT = 16


def _layout(job: StageJob) -> tuple[tuple[Any, ...], Jail] | tuple[()]:
    jail = jail_for("bwrap", job.limits.network, job.env, job.cwd)
    trials = jail.writable.parent
    if (trials not in jail.masked or jail.cwd != jail.writable or not trials.is_dir()
            or trials in (Path("/"), Path("/tmp"), Path("/dev/shm")) or STAGING.is_relative_to(trials)
            or any(Path(tmp).is_relative_to(p) for tmp in ("/tmp", "/dev") for p in (*jail.readonly, *jail.masked))
            or any(p.is_relative_to(trials) for p in (*jail.readonly, *jail.hidden))
            or any(p != trials and p.is_relative_to(trials) for p in jail.masked)):
        return ()
    worker_jail = dataclasses.replace(jail, writable=trials, staging=STAGING, caps=CAPS, cwd=Path("/"), tmp_mb=None)
    return (sys.executable, trials, jail.network, jail.readonly, jail.masked), worker_jail


class WarmPool:
    """The warm workers of one executor: about one per evaluation slot, started on demand, reused while healthy."""

    def __init__(self) -> None:
        self.idle: list[Worker] = []
        self.broken: dict[tuple[Any, ...], str] = {}  # keys whose workers failed to start: cold from then on
        self.warned = False

    async def start(self, job: StageJob, channel: socket.socket) -> WarmStarted | None:
        """Start `job`'s harness in a warm worker, waiting for its channel's first line as a cold start would; None
        where the warm path cannot run it (the caller takes the cold path)."""
        planned = plan(job)
        if planned is None or planned[0] in self.broken:
            return None
        key, jail, env = planned
        worker = self._take(key)
        if worker is None:
            try:
                worker = await Worker.start(key, jail, env)
            except (WarmError, OSError) as exc:
                self.broken[key] = str(exc)
                self._warn(str(exc))
                return None
        try:
            return await WarmStarted.begin(self, worker, job, channel)
        except OSError as exc:
            await worker.end()
            self._warn(f"a job could not be handed to a worker: {exc}")
            return None
        except BaseException:
            await worker.end()
            raise

    def _take(self, key: tuple[Any, ...]) -> Worker | None:
        loop = asyncio.get_running_loop()
        for worker in [w for w in self.idle if w.loop is not loop or not w.alive]:  # their loop ended, or they died
            self.idle.remove(worker)
            worker.kill()
            worker.close()
        for worker in reversed(self.idle):
            if worker.key == key:
                self.idle.remove(worker)
                if not worker.pending():  # a zygote has nothing to say between jobs
                    return worker
                worker.kill()
        return None

    async def release(self, worker: Worker) -> None:
        worker.busy = False
        if worker.alive and len(self.idle) < MAX_IDLE:
            self.idle.append(worker)
        else:
            await worker.retire()

    def _warn(self, why: str) -> None:
        if not self.warned:
            self.warned = True
            log.warning("sandbox: warm workers unavailable (%s); evaluations start a jail and an interpreter each", why)


@dataclass(eq=False)
class WarmStarted:
    """A stage's harness started in a warm worker, waiting for its channel's first line: `finish` lets it go and waits
    for it (its clock starts then); `abandon` kills a child whose job will never be let go. As `sandbox.Started`."""

    pool: WarmPool
    worker: Worker
    token: str
    pipes: list[BinaryIO]
    pumps: list[asyncio.Future[None]]
    logs: tuple[_CappedLog, _CappedLog]
    folder: Path
    disk_mb: int | None
    done: bool = False

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.worker.proc

    @property
    def jail(self) -> JailWatch:
        return self.worker.jail

    @classmethod
    async def begin(cls, pool: WarmPool, worker: Worker, job: StageJob, channel: socket.socket) -> WarmStarted:
        """Hand `job` to `worker` (its child sets up its jail and waits on the channel); raises OSError."""
        limits = job.limits
        nproc = await asyncio.to_thread(nproc_rlimit, limits) if os.getuid() != 0 else None
        token = uuid.uuid4().hex
        env = {**job.env, CHANNEL_VAR: str(CHANNEL_FD), TOKEN_VAR: token, "TMPDIR": "/tmp"}
        cwd = job.cwd.resolve()
        given = Path(job.env.get("EVOFORGE_TRIAL_DIR") or job.cwd)
        trial = cwd if given == job.cwd else given.resolve()  # the usual case: the trial folder is the cwd
        rlimits = {"memory_mb": limits.memory_mb, "cpu_s": limits.cpu_s, "max_processes": limits.max_processes,
                   "max_open_files": limits.max_open_files, "disk_mb": limits.disk_mb, "nproc_rlimit": nproc}
        message = {"argv": job.argv[3:], "env": env, "cwd": str(cwd), "trial": trial.name,
                   "tmp_mb": limits.tmp_mb, "limits": rlimits, "evaluator_sha256": job.evaluator_sha256}
        logs = (_CappedLog(job.stdout_path, limits.output_bytes), _CappedLog(job.stderr_path, limits.output_bytes))
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        try:
            worker.send(message, [channel.fileno(), out_w, err_w])
            worker.busy = True
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            for one in logs:
                one.finish()
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        pipes = [open(out_r, "rb", buffering=0), open(err_r, "rb", buffering=0)]  # noqa: SIM115 - closed by finish
        pumps = [pump(pipe, one) for pipe, one in zip(pipes, logs, strict=True)]
        return cls(pool, worker, token, pipes, pumps, logs, trial, limits.disk_mb)

    async def finish(self, timeout_s: float, stop: asyncio.Event | None = None) -> SandboxResult:
        """Let the harness go (the caller's broker sends the channel's first line), wait for it (at most `timeout_s`
        from now), and say how it ended; a healthy worker goes back to the pool."""
        self.done = True
        worker, start = self.worker, time.monotonic()
        reply: dict[str, Any] = {}
        try:
            ended, reply = await self._wait(timeout_s, stop)
            if ended != "exited" or not reply:
                await worker.end(term=True)
                reply = reply or worker.pending()
                await asyncio.to_thread(sweep, self.token)
            seconds = time.monotonic() - start
            await stop_pumps(self.pumps, self.pipes, grace=DRAIN_GRACE_S)
        except BaseException:  # cancelled: end the worker as on a timeout, then let the cancellation through
            await self._kill()
            raise
        finally:
            (out_tail, out_dropped), (err_tail, err_dropped) = self.logs[0].finish(), self.logs[1].finish()
        healthy = ended == "exited" and reply.get("ended") in ("exited", "too_many") and reply.get("empty") is True
        if healthy:
            await self.pool.release(worker)
        elif worker.alive:
            await worker.end()
        return SandboxResult(_returncode(reply, worker), ended == "timeout", seconds, out_tail, err_tail, out_dropped,
                             err_dropped, stopped=ended == "stopped",
                             limit="disk_limit" if ended.startswith("disk_limit") else None,
                             limit_reason=ended.partition(": ")[2])

    async def _wait(self, timeout_s: float, stop: asyncio.Event | None) -> tuple[str, dict[str, Any]]:
        """Wait for the zygote's report, the timeout, `stop`, or the folder outgrowing `disk_mb`: ("exited", report),
        ("timeout", {}), ("stopped", {}) or ("disk_limit: REASON", {}). The worker's death ends it too (its report,
        {} when none came). One future, set by whichever comes first (waits.py)."""
        worker = self.worker
        ending = Ending(timeout_s)
        ending.on_readable(worker.control.fileno(), "exited")  # its report, or the end of file of a dead zygote
        ending.on_future(worker.gone, "exited")  # the worker died (its report may never come)
        if stop is not None:
            ending.on_stop(stop)
        if self.disk_mb is not None:
            ending.on_disk(self.folder, self.disk_mb)
        ended = await ending.wait()
        return (ended, worker.pending()) if ended == "exited" else (ended, {})

    async def abandon(self) -> None:
        """Kill the child of a job that will never be let go (a trial that was not evaluated after all: nothing of
        the task ran, its harness still waits for the channel's first line); its worker goes back to the pool once
        its zygote reports the jail empty, else the worker ends."""
        if self.done:
            return
        self.done = True
        try:
            if await asyncio.to_thread(sweep, self.token):  # found by its environment: its setup is done
                reply = {}
                with contextlib.suppress(TimeoutError):
                    reply = await asyncio.wait_for(self.worker.receive(), ABANDON_WAIT_S)
                if reply.get("ended") == "exited" and reply.get("empty") is True:
                    await stop_pumps(self.pumps, self.pipes, grace=DRAIN_GRACE_S)
                    await self.pool.release(self.worker)
                    return
            await self._kill()
        except BaseException:
            await self._kill()
            raise
        finally:
            for one in self.logs:
                one.finish()

    async def _kill(self) -> None:
        try:
            await self.worker.end(term=True)
        finally:
            sweep(self.token)
            await stop_pumps(self.pumps, self.pipes, grace=0.0)


def _returncode(reply: dict[str, Any], worker: Worker) -> int | None:
    """The evaluation's return code as the zygote reported it (negative: killed by that signal; 143: stopped on
    SIGTERM), else bwrap's own (the worker died without a report)."""
    status, ended = reply.get("status"), reply.get("ended")
    if ended == "terminated":
        return TERMINATED
    if isinstance(status, int):
        with contextlib.suppress(ValueError):
            return os.waitstatus_to_exitcode(status)
    return worker.proc.returncode

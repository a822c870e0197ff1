"""Process launch, limits and kill for one evaluation: runs a command under the supervisor in its own session.

The command runs below `supervisor.py` (a child subreaper that applies the rlimits and reaps every
descendant), in a new session and process group, with a scrubbed environment. Output is read from pipes into
capped log files; on timeout the whole group gets SIGTERM, a short grace, then SIGKILL; afterwards any process
still carrying the trial's token in its environment is killed too, so nothing outlives the trial. Under bwrap
(launch.py) the chain is bwrap around the supervisor as the jail's PID 1, and a jail that ended by itself needs no
such sweep: the kernel killed everything in it before its PID 1's exit was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from evoforge.config import Limits
from evoforge.experiment.isolation import resolve as resolve_isolation
from evoforge.experiment.launch import SUPERVISOR, JailWatch, launch_argv, nproc_rlimit
from evoforge.experiment.waits import Ending, pump, stop_pumps

__all__ = ["SUPERVISOR", "SandboxResult", "Started", "child_env", "run_sandboxed", "start_sandboxed", "sweep"]
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the `evoforge` package
TOKEN_VAR = "EVOFORGE_TRIAL_TOKEN"
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
SECRET_PREFIXES = ("OPENAI_", "ANTHROPIC_", "EVOFORGE_LLM")
TERM_GRACE_S = 1.5  # longer than the supervisor's own grace, so it can clean up first
DRAIN_GRACE_S = 2.0
TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """How the sandboxed process ended: its return code (negative = killed by that signal) and its output."""

    returncode: int | None
    timed_out: bool
    seconds: float
    stdout_tail: bytes
    stderr_tail: bytes
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    stopped: bool = False  # ended early because the caller's `stop` event was set (a gate fired)
    limit: str | None = None  # the class of a limit the sandbox itself enforced and killed for (e.g. disk_limit)
    limit_reason: str = ""


def child_env(
    extra: Mapping[str, str], *, passthrough: Sequence[str] = (), base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A copy of the environment without secrets (names with KEY/TOKEN/SECRET/PASSWORD, LLM prefixes).

    Names in `passthrough` are kept; PYTHONPATH gains the folder holding `evoforge`; `extra` is added last.
    """
    source = os.environ if base is None else base
    keep = set(passthrough)
    env = {k: v for k, v in source.items() if k in keep or not _secret(k)}
    paths = [str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra)
    return env


@functools.lru_cache(maxsize=4096)
def _secret(name: str) -> bool:
    """Whether a variable of this name may hold a secret (asked for every variable at each stage: kept by name)."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS) or upper.startswith(SECRET_PREFIXES)


class _CappedLog:
    """Writes a stream to a file, keeping at most `cap` bytes: the head, a marker, and the tail.

    The file is made when the first bytes come: a stream that stays empty leaves no file (most evaluations print
    nothing, and making a file cost the event loop more than the rest of starting the evaluation: an inode each,
    two a stage). A file left at `path` by an earlier run of the same stage is removed at once, so what is there
    afterwards is this run's output or nothing."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path, self.cap = path, cap
        self.head_limit = cap - min(64 * 1024, cap // 2)
        self.file: BinaryIO | None = None  # opened by the first `feed` with bytes
        self.closed = False
        self.unwritable = False  # the file could not be made: the stream is kept in `tail` only
        self.written = 0
        self.total = 0
        self.tail = bytearray()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def feed(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self.file is None and not self.unwritable:
            try:
                self.file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
            except OSError:  # its folder is gone or full: the tail still reaches the outcome
                self.unwritable = True
        self.total += len(data)
        if self.file is not None and self.written < self.head_limit:
            part = data[: self.head_limit - self.written]
            self.file.write(part)
            self.file.flush()  # what came is in the file at once: a long evaluation's log can be followed
            self.written += len(part)
        self.tail += data
        if len(self.tail) > 2 * TAIL_BYTES:
            del self.tail[:-TAIL_BYTES]

    def finish(self) -> tuple[bytes, int]:
        """Close the file; returns the last bytes of the stream and how many bytes the file left out."""
        self.closed = True
        if self.file is None:  # nothing came, or the file could not be made (then none of it is in a file)
            return bytes(self.tail[-TAIL_BYTES:]), self.total
        rest, room = self.total - self.written, self.cap - self.written
        dropped = 0
        if rest <= room:
            self.file.write(bytes(self.tail[-rest:]) if rest else b"")
        else:
            marker = f"\n[evoforge: output over {self.cap} bytes; the middle was dropped]\n".encode()
            keep = max(room - len(marker), 0)
            self.file.write((marker + (bytes(self.tail[-keep:]) if keep else b""))[:room])
            dropped = rest - keep
        self.file.close()
        return bytes(self.tail[-TAIL_BYTES:]), dropped


async def _spawn(argv: list[str], cwd: Path, env: Mapping[str, str], pass_fds: Sequence[int] = (),
                 stdin_path: Path | None = None) -> tuple[asyncio.subprocess.Process, list[BinaryIO]]:
    """Start `argv` in a new session writing to pipes of our own; returns the process and the read ends.

    With asyncio's own pipes `Process.wait()` would hang until every holder of the pipe exits, strays too.
    """
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    stdin = open(stdin_path, "rb") if stdin_path is not None else None  # noqa: SIM115 - closed below
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, start_new_session=True, pass_fds=tuple(pass_fds),
            stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w,
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        if stdin is not None:
            stdin.close()
    return proc, [open(out_r, "rb", buffering=0), open(err_r, "rb", buffering=0)]  # noqa: SIM115


def sweep(token: str) -> list[int]:
    """SIGKILL every process whose environment carries `TOKEN_VAR=token`; returns the pids found.

    Stops after two passes in a row find nothing (a process caught mid-exec shows an empty environment once).
    """
    needle = f"{TOKEN_VAR}={token}".encode()
    found: list[int] = []
    clean = 0
    for _ in range(10):
        hits = [pid for pid in _pids() if needle in _environ(pid).split(b"\0")]
        for pid in hits:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        found += [p for p in hits if p not in found]
        clean = 0 if hits else clean + 1
        if clean == 2:
            break
    return found


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != os.getpid()]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop(proc: asyncio.subprocess.Process, jail: JailWatch | None) -> None:
    """SIGTERM the jail's supervisor (bwrap) or the whole process group, wait a short grace, then SIGKILL it."""
    if jail is None or not jail.terminate():
        _killpg(proc.pid, signal.SIGTERM)  # bwrap itself dies of it, and the jail at once with it
    try:
        await asyncio.wait_for(proc.wait(), TERM_GRACE_S)
    except TimeoutError:
        _killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def run_sandboxed(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    limits: Limits,
    stdout_path: Path,
    stderr_path: Path,
    stop: asyncio.Event | None = None,
    pass_fds: Sequence[int] = (),
    stdin_path: Path | None = None,
    hidden: Sequence[Path] = (),
    harness: bool = False,
) -> SandboxResult:
    """Run `argv` in the sandbox and wait for it (at most `timeout_s`); nothing it started outlives it.

    When `stop` is set while it runs, the process group is stopped as on a timeout and the result says
    `stopped=True` (not timed_out). `pass_fds` stay open in the command (the harness's channel); `stdin_path`
    is its standard input (else /dev/null); `hidden` paths are emptied in the jail (bwrap). `harness`: argv runs
    the harness, which under bwrap supervises itself (one interpreter start, not two).
    """
    started = await start_sandboxed(argv, cwd=cwd, env=env, limits=limits, stdout_path=stdout_path,
                                    stderr_path=stderr_path, pass_fds=pass_fds, stdin_path=stdin_path, hidden=hidden,
                                    harness=harness)
    return await started.finish(timeout_s, stop)


async def start_sandboxed(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: Limits,
    stdout_path: Path,
    stderr_path: Path,
    pass_fds: Sequence[int] = (),
    stdin_path: Path | None = None,
    hidden: Sequence[Path] = (),
    harness: bool = False,
) -> Started:
    """Start `argv` in the sandbox (as `run_sandboxed` does) and return at once; `Started.finish` waits for it.

    A harness started this way starts its interpreter and jail, then waits for its channel's first line: the
    Engineer starts a trial's first stage while the trial still waits for an evaluation slot."""
    token = uuid.uuid4().hex
    logs = (_CappedLog(stdout_path, limits.output_bytes), _CappedLog(stderr_path, limits.output_bytes))
    jail: JailWatch | None = None
    try:
        if resolve_isolation(limits.isolation, limits.network) == "bwrap":
            jail = JailWatch()
            nproc = await asyncio.to_thread(nproc_rlimit, limits) if os.getuid() != 0 else None
            cmd = launch_argv(argv, limits, env, cwd, pass_fds, hidden, status_fd=jail.status_w,
                              info_fd=jail.info_w, lifeline_fd=jail.life_r, nproc=nproc, harness=harness)
            fds = (*pass_fds, jail.status_w, jail.info_w, jail.life_r)
        else:
            cmd, fds = launch_argv(argv, limits, env, cwd, pass_fds, hidden), tuple(pass_fds)
        proc, pipes = await _spawn(cmd, cwd, {**env, TOKEN_VAR: token}, fds, stdin_path)
    except BaseException:
        for log in logs:
            log.finish()
        if jail is not None:
            jail.close()
        raise
    if jail is not None:
        jail.started()
    pumps = [pump(pipe, log) for pipe, log in zip(pipes, logs, strict=True)]
    folder = Path(env.get("EVOFORGE_TRIAL_DIR") or cwd)
    return Started(proc, pipes, pumps, logs, jail, token, folder, limits.disk_mb)


@dataclass
class Started:
    """A sandboxed process started by `start_sandboxed`: `finish` waits for it (its clock starts then) and
    cleans up; `abandon` kills one that will never be waited for."""

    proc: asyncio.subprocess.Process
    pipes: list[BinaryIO]
    pumps: list[asyncio.Future[None]]
    logs: tuple[_CappedLog, _CappedLog]
    jail: JailWatch | None
    token: str
    folder: Path
    disk_mb: int | None
    done: bool = False

    async def finish(self, timeout_s: float, stop: asyncio.Event | None = None) -> SandboxResult:
        """Wait for the process (at most `timeout_s` from now), stop it on `stop`, and say how it ended."""
        proc, jail, pumps, pipes = self.proc, self.jail, self.pumps, self.pipes
        self.done = True
        start = time.monotonic()
        try:
            ended = await _wait_exit(proc, timeout_s, stop, self.folder, self.disk_mb)
            timed_out, stopped = ended == "timeout", ended == "stopped"
            if ended != "exited":
                await _stop(proc, jail)
            seconds = time.monotonic() - start
            _killpg(proc.pid, signal.SIGKILL)  # strays left in the group after a normal exit
            if jail is None or ended != "exited":  # bwrap that exited by itself had reaped the jail's PID 1, whose
                await asyncio.to_thread(sweep, self.token)  # exit the kernel completes only once the jail is dead
            await stop_pumps(pumps, pipes, grace=DRAIN_GRACE_S)
        except BaseException:  # cancelled: stop it as on a timeout, then let the cancellation through
            await self._kill()
            raise
        finally:
            (out_tail, out_dropped), (err_tail, err_dropped) = self.logs[0].finish(), self.logs[1].finish()
            reported = jail.status() if jail is not None else None
            if jail is not None:
                jail.close()
        returncode = proc.returncode if reported is None else reported
        return SandboxResult(returncode, timed_out, seconds, out_tail, err_tail, out_dropped, err_dropped,
                             stopped=stopped, limit="disk_limit" if ended.startswith("disk_limit") else None,
                             limit_reason=ended.partition(": ")[2])

    async def abandon(self) -> None:
        """Kill a process that will never be waited for (a trial that was not evaluated after all)."""
        if self.done:
            return
        self.done = True
        try:
            await self._kill()
        finally:
            for log in self.logs:
                log.finish()
            if self.jail is not None:
                self.jail.close()

    async def _kill(self) -> None:
        try:
            await _stop(self.proc, self.jail)
        finally:
            _killpg(self.proc.pid, signal.SIGKILL)
            sweep(self.token)
            await stop_pumps(self.pumps, self.pipes, grace=0.0)


async def _wait_exit(proc: asyncio.subprocess.Process, timeout_s: float, stop: asyncio.Event | None,
                     folder: Path, disk_mb: int | None) -> str:
    """Wait for the process to exit, the timeout, `stop`, or its folder outgrowing `disk_mb`: returns "exited",
    "timeout", "stopped" or "disk_limit: REASON"."""
    waiter = asyncio.ensure_future(proc.wait())
    ending = Ending(timeout_s)
    ending.on_future(waiter, "exited")
    if stop is not None:
        ending.on_stop(stop)
    if disk_mb is not None:
        ending.on_disk(folder, disk_mb)
    try:
        return await ending.wait()
    finally:
        if not waiter.done():
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)

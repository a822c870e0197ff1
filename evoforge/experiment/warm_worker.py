"""A warm worker (warm.py): bwrap with the zygote (zygote.py) as the jail's PID 1, its control socket (one JSON
message per job with the job's descriptors; one report per job back), the JailWatch of its PID 1, and how it ends:
retired when idle (its zygote exits at EOF), or killed with its whole jail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.experiment.child_jail import ROOM_VAR
from evoforge.experiment.isolation import Jail, wrapper_argv
from evoforge.experiment.launch import JailWatch, compile_chain
from evoforge.experiment.sandbox import TOKEN_VAR, _killpg, _stop, sweep

ZYGOTE = "evoforge.experiment.zygote"
STAGING = Path("/tmp/.evoforge-trials")  # inside the worker's own /tmp: where its PID 1 sees the trials folder
READY_TIMEOUT_S = 60.0
RETIRE_GRACE_S = 1.0
ROOM_BYTES = 64 * 1024  # room in the zygote's environ for each child's (child_jail.py)
REPLY_BYTES = 1 << 16


class WarmError(Exception):
    """A warm worker could not be started or used (the evaluation takes the cold path)."""


@dataclass(eq=False)
class Worker:
    """One warm jail: bwrap with the zygote as PID 1, its control socket and the JailWatch of its PID 1."""

    key: tuple[Any, ...]
    proc: asyncio.subprocess.Process
    control: socket.socket
    jail: JailWatch
    token: str
    stderr: int
    loop: asyncio.AbstractEventLoop
    said: bytearray = field(default_factory=bytearray)  # the last bytes the zygote wrote to its stderr
    keeper: asyncio.Task[None] | None = None
    busy: bool = False  # a job was handed to it and its report not yet read
    gone: asyncio.Future[None] = field(init=False)  # done once its bwrap has exited (the keeper sees it)

    def __post_init__(self) -> None:
        self.gone = self.loop.create_future()

    @classmethod
    async def start(cls, key: tuple[Any, ...], jail: Jail, env: dict[str, str]) -> Worker:
        """Start a worker and wait until its zygote says it is ready (its self-test passed); raises WarmError."""
        compile_chain()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        watch = JailWatch()
        err_r, err_w = os.pipe()
        token = uuid.uuid4().hex
        argv = [*wrapper_argv(jail, watch.info_w), sys.executable, "-m", ZYGOTE, "--control-fd", str(theirs.fileno()),
                "--status-fd", str(watch.status_w), "--lifeline-fd", str(watch.life_r), "--staging", str(STAGING),
                "--trials", str(jail.writable)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd="/", env={**env, TOKEN_VAR: token, ROOM_VAR: "x" * ROOM_BYTES}, start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err_w,
                pass_fds=(theirs.fileno(), watch.status_w, watch.info_w, watch.life_r))
        except BaseException:
            for fd in (err_r,):
                os.close(fd)
            ours.close()
            watch.close()
            raise
        finally:
            theirs.close()
            os.close(err_w)
        watch.started()
        ours.setblocking(False)
        os.set_blocking(err_r, False)
        worker = cls(key, proc, ours, watch, token, err_r, asyncio.get_running_loop())
        worker.loop.add_reader(err_r, worker._drain)
        worker.keeper = asyncio.create_task(worker._keep())
        try:
            reply = await asyncio.wait_for(worker.receive(), READY_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            await worker.end()
            raise WarmError(f"the worker did not start: {type(exc).__name__} {exc}".strip()) from exc
        except BaseException:  # cancelled: the worker goes with it
            await worker.end()
            raise
        if reply.get("ready") is not True:
            await worker.end()
            said = worker.said.decode(errors="replace").strip()[-300:]
            raise WarmError(str(reply.get("error") or f"the worker ended at start: {said or 'no message'}"))
        return worker

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            chunk = os.read(self.stderr, 4096)
            self.said = bytearray((self.said + chunk)[-4096:])
            if not chunk:
                self.loop.remove_reader(self.stderr)

    async def _keep(self) -> None:
        """Hold the worker for its event loop: when the loop ends (its tasks cancelled), the worker ends with it."""
        try:
            await self.proc.wait()
        except asyncio.CancelledError:
            await self.retire()
            self.close()
            raise
        finally:
            if not self.gone.done():
                self.gone.set_result(None)
        if not self.busy:  # else its job's waiter hears the end on the control socket, and closes it
            self.close()

    async def retire(self) -> None:
        """End an idle worker: its zygote exits at EOF of its control socket (so bwrap reaps it and the CPU time of
        its children is accounted for), else within RETIRE_GRACE_S it is killed."""
        self.control.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), RETIRE_GRACE_S)
        self.kill()
        await self.proc.wait()

    async def receive(self) -> dict[str, Any]:
        """The zygote's next message ({} when the socket closed: the worker is gone)."""
        data = await self.loop.sock_recv(self.control, REPLY_BYTES)
        return _decode(data)

    def pending(self) -> dict[str, Any]:
        """A message already waiting on the control socket, without waiting ({} when none)."""
        try:
            return _decode(self.control.recv(REPLY_BYTES))
        except OSError:
            return {}

    def send(self, job: dict[str, Any], fds: list[int]) -> None:
        socket.send_fds(self.control, [json.dumps(job).encode()], fds)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and self.control.fileno() >= 0

    def kill(self) -> None:
        """SIGKILL bwrap's group (its PID 1 and the whole jail die with it) and cut the lifeline."""
        _killpg(self.proc.pid, signal.SIGKILL)
        self.jail.close()

    async def end(self, term: bool = False) -> None:
        """End the worker (with `term`: SIGTERM to its PID 1 and a grace first, as the cold path stops a jail)."""
        if term and self.proc.returncode is None:
            await _stop(self.proc, self.jail)
        self.kill()
        await self.proc.wait()
        await asyncio.to_thread(sweep, self.token)
        if self.keeper is not None:
            await asyncio.gather(self.keeper, return_exceptions=True)
        self.close()

    def close(self) -> None:
        self.jail.close()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.stderr)
        with contextlib.suppress(OSError):
            os.close(self.stderr)
        self.stderr = -1
        self.control.close()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {"error": f"an unreadable message {data[:100]!r}"}
    return value if isinstance(value, dict) else {"error": f"an unexpected message {value!r:.100}"}

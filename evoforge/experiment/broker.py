"""The evoforge side of a Python evaluator's channel: receives the evaluator's one result and starts, on the
evaluator's request (`evoforge.sandbox.run_candidate`), the candidate in a sandbox of its own.

The channel is a socketpair: the harness inherits one end (its fd in $EVOFORGE_CHANNEL_FD), this process keeps
the other. Nested bubblewrap cannot start inside the evaluator's jail (no capabilities left), so the candidate's
jail is started from here, outside it, with the task's limits and isolation and without the channel or the
hidden files. Messages are JSON lines. evoforge first sends {"token"}, a secret the harness keeps in memory and
puts in its result; a line a candidate sprays onto the process's descriptors lacks it and is ignored. Then
{"op": "result", "token", "value": ...} and {"op": "run", "id", "argv", "input",
"timeout_s"}, answered by {"id", "returncode", "stdout", "stderr", "seconds", "timed_out", "error_class"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoforge.experiment.sandbox import SandboxResult

LINE_LIMIT = 256 * 1024 * 1024  # one message (a result with large metrics) may be this long
READ_BYTES = 1 << 20
CLOSE_GRACE_S = 5.0
Runner = Callable[..., Awaitable[SandboxResult]]


def run_error_class(run: SandboxResult) -> str | None:
    """The class of a finished candidate run: None for exit 0, else timeout / killed_by_limit / crash / exit."""
    if run.timed_out:
        return "timeout"
    if run.limit is not None:
        return run.limit
    code = run.returncode
    if code == 0:
        return None
    if code is None or code < 0:
        sig = -(code or -signal.SIGKILL)
        if sig in (signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ):
            return "killed_by_limit"
        return f"crash:{signal.Signals(sig).name}" if sig in signal.valid_signals() else f"crash:signal {sig}"
    return f"exit:{code}"


@dataclass
class Broker:
    """Serves one stage's channel from reader callbacks (`open`: no task of its own). `start(argv, cwd=,
    stdout_path=, stderr_path=, stdin_path=, timeout_s=)` runs one candidate in its sandbox (the Engineer binds the
    task's limits, environment and jail into it)."""

    trial_dir: Path
    start: Runner
    output_bytes: int
    reported: bool = False
    result: Any = None
    runs: int = 0
    problems: list[str] = field(default_factory=list)
    limits_hit: list[str] = field(default_factory=list)  # "disk_limit: reason" for each candidate run stopped so
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _sock: socket.socket | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _scanned: int = 0  # how much of the buffer holds no newline
    _ended: asyncio.Future[None] | None = None  # done at the end of file (or a message over the limit)
    _sending: asyncio.Lock | None = None

    def open(self, sock: socket.socket) -> None:
        """Send the token line on `sock` (the harness goes once it has it) and answer what comes back from reader
        callbacks until the other end is closed; `close` ends it."""
        loop = asyncio.get_running_loop()
        self._sock, self._ended, self._sending = sock, loop.create_future(), asyncio.Lock()
        sock.setblocking(False)
        try:
            sock.send(json.dumps({"token": self.token}).encode() + b"\n")  # a few bytes into an empty buffer
        except OSError as exc:  # the harness is gone already: its end says how
            self.problems.append(f"the channel closed before its first line went ({exc})")
            self._ended.set_result(None)
            return
        loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end()
            return
        self._buffer += data
        while (at := self._buffer.find(b"\n", self._scanned)) >= 0:
            line = bytes(self._buffer[: at + 1])
            del self._buffer[: at + 1]
            self._scanned = 0
            self._handle(line)
        self._scanned = len(self._buffer)
        if self._scanned > LINE_LIMIT:
            self.problems.append(f"a message over {LINE_LIMIT} bytes")
            self._end()

    def _end(self) -> None:
        """Stop reading (the end of file, or a message over the limit); the candidates' runs are cancelled."""
        if self._sock is not None and self._ended is not None and not self._ended.done():
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._ended.set_result(None)
            for task in self._tasks:
                task.cancel()

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError as exc:
            self.problems.append(f"a message that is not JSON ({exc})")
            return
        op = message.get("op") if isinstance(message, dict) else None
        if op == "result":
            if message.get("token") != self.token:
                self.problems.append("a result without the channel's token (written by someone else)")
                return
            if self.reported:
                self.problems.append("a second result (ignored)")
                return
            self.reported, self.result = True, message.get("value")
        elif op == "run":
            task = asyncio.create_task(self._run(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.problems.append(f"an unknown message {str(message)[:100]!r}")

    async def _run(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": message.get("id")}
        argv, timeout_s, text = message.get("argv"), message.get("timeout_s"), message.get("input")
        if (not isinstance(argv, list) or not all(isinstance(a, str) for a in argv)
                or not isinstance(timeout_s, int | float) or timeout_s <= 0
                or not (text is None or isinstance(text, str))):
            reply["error"] = "malformed run request: argv must be a list of strings and timeout_s a number > 0"
        else:
            try:
                reply.update(await self._start(argv, float(timeout_s), text))
            except OSError as exc:  # e.g. an argument list too long: the evaluator hears why, the trial goes on
                reply["error"] = f"cannot start the candidate: {type(exc).__name__}: {exc}"
        assert self._sock is not None and self._sending is not None
        async with self._sending:  # one reply at a time on the socket
            await asyncio.get_running_loop().sock_sendall(self._sock, json.dumps(reply).encode() + b"\n")

    async def _start(self, argv: list[str], timeout_s: float, text: str | None) -> dict[str, Any]:
        self.runs += 1
        stem = self.trial_dir / f"candidate-{self.runs}"
        stdin_path = None
        if text is not None:
            stdin_path = stem.with_suffix(".stdin")
            stdin_path.write_text(text, encoding="utf-8")
        out, err = stem.with_suffix(".stdout.log"), stem.with_suffix(".stderr.log")
        run = await self.start([sys.executable, *argv], cwd=self.trial_dir, stdout_path=out, stderr_path=err,
                               stdin_path=stdin_path, timeout_s=timeout_s)
        if run.limit is not None:
            self.limits_hit.append(f"{run.limit}: {run.limit_reason}")
        return {"returncode": run.returncode, "stdout": _read(out, self.output_bytes),
                "stderr": _read(err, self.output_bytes), "seconds": run.seconds, "timed_out": run.timed_out,
                "error_class": run_error_class(run), "notes": {"stdout_dropped": run.stdout_dropped}}


def _read(path: Path, cap: int) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(cap).decode("utf-8", errors="replace")
    except OSError:
        return ""


async def close(broker: Broker, ours: socket.socket) -> None:
    """Let the broker read what the finished stage sent, to the end of file (bounded; no wait when it is there),
    then stop it, let its candidates' runs end, and close our end."""
    ended = broker._ended
    if ended is not None and not ended.done():
        with contextlib.suppress(TimeoutError):  # a broken channel is judged by what was received
            await asyncio.wait_for(asyncio.shield(ended), CLOSE_GRACE_S)
    broker._end()
    if broker._tasks:
        await asyncio.gather(*broker._tasks, return_exceptions=True)
    ours.close()


def candidate_env(env: Mapping[str, str]) -> dict[str, str]:
    """The evaluator's environment without what only the evaluator may hold (the channel, a result file)."""
    return {k: v for k, v in env.items() if k not in ("EVOFORGE_CHANNEL_FD", "EVOFORGE_RESULT")}

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
    """Serves one stage's channel. `start(argv, cwd=, stdout_path=, stderr_path=, stdin_path=, timeout_s=)`
    runs one candidate in its sandbox (the Engineer binds the task's limits, environment and jail into it)."""

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

    async def serve(self, sock: socket.socket) -> None:
        """Answer requests on `sock` until the other end is closed (or this task is cancelled)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
        writer.write(json.dumps({"token": self.token}).encode() + b"\n")
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self.problems.append(f"a message over {LINE_LIMIT} bytes")
                    break
                if not line:
                    break
                self._handle(line, writer)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> None:
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
            task = asyncio.create_task(self._run(message, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.problems.append(f"an unknown message {str(message)[:100]!r}")

    async def _run(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
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
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()

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


async def close(broker_task: asyncio.Task[None], ours: socket.socket) -> None:
    """Let the broker drain what the finished stage sent (bounded), then stop it and close our end."""
    try:
        await asyncio.wait_for(asyncio.shield(broker_task), CLOSE_GRACE_S)
    except (TimeoutError, Exception):  # noqa: BLE001 - a broken channel is judged by what was received
        broker_task.cancel()
        await asyncio.gather(broker_task, return_exceptions=True)
    ours.close()


def candidate_env(env: Mapping[str, str]) -> dict[str, str]:
    """The evaluator's environment without what only the evaluator may hold (the channel, a result file)."""
    return {k: v for k, v in env.items() if k not in ("EVOFORGE_CHANNEL_FD", "EVOFORGE_RESULT")}

"""`run_candidate`: an evaluator runs the candidate program in its OWN jailed process and gets back its output;
only the evaluator reports the score (stdlib only: evaluators import it in the harness's light process).

Under evoforge the request goes through the channel the harness inherited to the evoforge process, which starts
the candidate in a separate sandbox (the task's limits and isolation, the hidden files masked, no result channel)
and answers with its return code, output and, on request, the JSON value it printed or its function returned.
Outside evoforge (an evaluator called from a script or a test) the program runs as a plain subprocess, unjailed.
It imports little (no subprocess, socket or dataclasses unless run outside evoforge): every evaluation loads it.
"""

from __future__ import annotations

import _thread
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

CHANNEL_VAR = "EVOFORGE_CHANNEL_FD"
MARKER = "EVOFORGE_CANDIDATE_VALUE "
DEFAULT_TIMEOUT_S = 60.0
RUNNER = """\
import importlib.util, json, sys
path, function, marker, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.argv = [path]
spec = importlib.util.spec_from_file_location("candidate", path)
module = importlib.util.module_from_spec(spec)
sys.modules["candidate"] = module
spec.loader.exec_module(module)
value = getattr(module, function)(*args)
def plain(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    return v.item() if hasattr(v, "item") else v
sys.stdout.flush()
print("\\n" + marker + json.dumps(plain(value), allow_nan=True), flush=True)
"""


class CandidateError(RuntimeError):
    """The candidate could not be run at all (the channel broke, or evoforge refused the request)."""


class CandidateRun:
    """How the candidate's own process ended. `error_class` is None when it exited 0, else e.g. "timeout",
    "killed_by_limit", "disk_limit", "exit:1", "crash:SIGSEGV"; `value` is what `function` returned (or the last
    JSON line printed when `json_value=True`), None when there is none. Frozen, compared field by field (a frozen
    dataclass written out: `dataclasses` costs an evaluation 10 ms of imports)."""

    __slots__ = ("returncode", "stdout", "stderr", "seconds", "timed_out", "error_class", "value", "has_value",
                 "notes")
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    error_class: str | None
    value: Any
    has_value: bool
    notes: dict[str, Any]

    def __init__(self, returncode: int | None, stdout: str, stderr: str, seconds: float, timed_out: bool = False,
                 error_class: str | None = None, value: Any = None, has_value: bool = False,
                 notes: dict[str, Any] | None = None) -> None:
        fields = (returncode, stdout, stderr, seconds, timed_out, error_class, value, has_value, notes or {})
        for name, field_value in zip(self.__slots__, fields, strict=True):
            object.__setattr__(self, name, field_value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} (CandidateRun is frozen)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} (CandidateRun is frozen)")

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if type(other) is CandidateRun else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # its notes are a dict

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"CandidateRun({inner})"

    @property
    def ok(self) -> bool:
        return self.error_class is None

    def reason(self) -> str:
        """One line saying why the run failed ("" when it did not), ending with the last line of stderr."""
        if self.ok:
            return ""
        last = (self.stderr.strip().splitlines() or [""])[-1].strip()
        return f"{self.error_class}: {last}"[:500] if last else str(self.error_class)


class _Channel:
    """The harness's line-oriented JSON channel to the evoforge process (one request at a time), read and written
    on its socket's descriptor directly."""

    def __init__(self, fd: int) -> None:
        self.fd, self.lock, self.buffer, self.next_id = fd, _thread.allocate_lock(), b"", 0
        self.token = str(self._line().get("token", ""))  # evoforge's first line: results must carry it

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise CandidateError("the channel to evoforge closed before it answered")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        value = json.loads(line)
        return value if isinstance(value, dict) else {"error": value}

    def send(self, message: dict[str, Any], default: Any = None) -> None:
        data = memoryview(json.dumps(message, allow_nan=True, default=default).encode() + b"\n")
        while data:
            data = data[os.write(self.fd, data):]

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            self.send({**message, "id": self.next_id})
            reply = self._line()
        if "error" in reply:
            raise CandidateError(f"evoforge refused to run the candidate: {reply.get('error', reply)!r:.300}")
        return reply


_channel: _Channel | None = None


def attach(fd: int) -> None:
    """Use the inherited socket `fd` as the channel (the harness calls it before loading the evaluator)."""
    global _channel
    _channel = _Channel(fd)


def report(value: Any, default: Any = None) -> None:
    """Send the evaluator's result to evoforge (the harness calls it once evaluate() has returned)."""
    if _channel is None:
        raise CandidateError("no channel to evoforge")
    with _channel.lock:
        _channel.send({"op": "result", "token": _channel.token, "value": value}, default=default)


def run_candidate(program_path: str | os.PathLike[str], args: Sequence[str] = (), *, input: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S, function: str | None = None,
                  function_args: Sequence[Any] = (), json_value: bool = False) -> CandidateRun:
    """Run the candidate at `program_path` in its own sandboxed process and return how it ended.

    Without `function` it runs `python PROGRAM ARGS...` with `input` on stdin; with `function` it imports the
    program and calls `function(*function_args)` (JSON arguments), handing back its return value as `.value`.
    `timeout_s` bounds this run (the stage's own timeout still bounds the whole evaluation). It never raises
    for a broken candidate: look at `.ok`, `.error_class` and `.reason()`.
    """
    program = os.path.realpath(program_path)
    if function is not None:
        argv = ["-c", RUNNER, program, function, MARKER, json.dumps(list(function_args))]
    else:
        argv = [program, *map(str, args)]
    if _channel is None:
        return _run_here(argv, input, timeout_s, _wanted(function, json_value))
    reply = _channel.request({"op": "run", "argv": argv, "input": input, "timeout_s": float(timeout_s)})
    return _finish(reply, _wanted(function, json_value))


def _wanted(function: str | None, json_value: bool) -> str | None:
    return "marker" if function is not None else "json" if json_value else None


def _finish(reply: dict[str, Any], want_value: str | None) -> CandidateRun:
    stdout = str(reply.get("stdout", ""))
    value, has_value = _value_of(stdout, want_value == "json") if want_value else (None, False)
    error_class = reply.get("error_class")
    if error_class is None and want_value and not has_value:
        error_class = "no_value"
    return CandidateRun(returncode=reply.get("returncode"), stdout=stdout, stderr=str(reply.get("stderr", "")),
                        seconds=float(reply.get("seconds", 0.0)), timed_out=bool(reply.get("timed_out")),
                        error_class=error_class, value=value, has_value=has_value,
                        notes=dict(reply.get("notes") or {}))


def _value_of(stdout: str, json_lines: bool) -> tuple[Any, bool]:
    """The value after the runner's marker on the last such line, else (with `json_lines`) the last JSON line;
    (None, False) when there is none."""
    lines = stdout.splitlines()
    for line in reversed(lines):
        if line.startswith(MARKER):
            try:
                return json.loads(line.removeprefix(MARKER)), True
            except ValueError:
                return None, False
    for line in reversed(lines if json_lines else []):
        text = line.strip()
        if text[:1] in "{[" and text[-1:] in "}]":
            try:
                return json.loads(text), True
            except ValueError:
                continue
    return None, False


def _run_here(argv: list[str], input: str | None, timeout_s: float, want_value: str | None) -> CandidateRun:
    """Outside evoforge: run the program as a plain subprocess in its own session (killed as a group on timeout)."""
    import signal
    import subprocess

    start = time.monotonic()
    child = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(input, timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = child.communicate()
        timed_out = True
    code = child.returncode
    error_class = "timeout" if timed_out else None if code == 0 else (
        f"exit:{code}" if code > 0 else f"crash:{signal.Signals(-code).name}")
    reply = {"returncode": code, "stdout": stdout, "stderr": stderr, "seconds": time.monotonic() - start,
             "timed_out": timed_out, "error_class": error_class}
    return _finish(reply, want_value)

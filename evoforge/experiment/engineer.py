"""The Engineer: writes a candidate into its trial folder, runs the task's evaluator on it in the sandbox,
and turns what happened into an `Outcome` (a score and metrics, or an error class with a clear reason).

A Python evaluator runs through the harness with the trial folder as working directory; a command evaluator
runs through /bin/sh in the task folder and reports via the file named by EVOFORGE_RESULT or its last JSON
stdout line.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoforge.experiment.harness import ERROR_KEY
from evoforge.experiment.result import BadResult, last_json_line, metrics_of, read_result_file, validate
from evoforge.experiment.sandbox import SandboxResult, child_env, run_sandboxed
from evoforge.models import Outcome, TrialStatus
from evoforge.task.loader import Task

RESULT_FILE = "result.json"
TELEMETRY_FILE = "telemetry.jsonl"
TAIL_CHARS = 2048
TRACEBACK_LINES = 12
LIMIT_SIGNALS = (signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ)


class Engineer:
    """Evaluates candidates for one task; several `evaluate` calls may run at once in one event loop."""

    def __init__(self, task: Task, *, env_passthrough: Sequence[str] = ()) -> None:
        self.task = task
        self.env_passthrough = tuple(env_passthrough)

    async def evaluate(self, code: str, trial_dir: Path) -> Outcome:
        """Write `code` as trial_dir / task.program_name, run the evaluator on it, and return the outcome."""
        trial_dir = Path(trial_dir).resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        program_path = trial_dir / self.task.program_name
        program_path.write_text(code, encoding="utf-8")
        result_path = trial_dir / RESULT_FILE
        result_path.unlink(missing_ok=True)
        env = child_env(
            {
                "EVOFORGE_RESULT": str(result_path),
                "EVOFORGE_TRIAL_DIR": str(trial_dir),
                "EVOFORGE_TASK_DIR": str(self.task.root.resolve()),
                "EVOFORGE_TELEMETRY": str(trial_dir / TELEMETRY_FILE),
            },
            passthrough=self.env_passthrough,
        )
        argv, cwd = self._command(program_path, result_path, trial_dir)
        config = self.task.config
        run = await run_sandboxed(
            argv, cwd=cwd, env=env, timeout_s=config.timeout_s, limits=config.limits,
            stdout_path=trial_dir / "stdout.log", stderr_path=trial_dir / "stderr.log",
        )
        return self._outcome(run, result_path)

    def _command(self, program_path: Path, result_path: Path, trial_dir: Path) -> tuple[list[str], Path]:
        evaluator = self.task.evaluator_path
        if evaluator is not None:
            harness = [sys.executable, "-m", "evoforge.experiment.harness"]
            return [*harness, str(evaluator), str(program_path), str(result_path)], trial_dir
        command = (self.task.config.command or "").replace("{program}", shlex.quote(str(program_path)))
        return ["/bin/sh", "-c", command], self.task.root.resolve()

    def _outcome(self, run: SandboxResult, result_path: Path) -> Outcome:
        tails = {"seconds": run.seconds, "stdout_tail": _tail(run.stdout_tail),
                 "stderr_tail": _tail(run.stderr_tail)}
        if run.timed_out:
            limit = self.task.config.timeout_s
            return _failed("timeout", f"evaluation exceeded timeout_s={limit:g}; its processes were killed",
                           **tails)
        try:
            raw = read_result_file(result_path)
            if raw is None and self.task.evaluator_path is None:
                raw = last_json_line(run.stdout_tail.decode("utf-8", errors="replace"))
        except BadResult as exc:
            return _failed("bad_result", str(exc), **tails)
        if raw is None:
            return self._no_result(run, **tails)
        if self.task.evaluator_path is not None and isinstance(raw, dict) and ERROR_KEY in raw:
            return self._harness_error(raw[ERROR_KEY], **tails)
        try:
            score, metrics = validate(raw, self.task.config.objective.metric)
        except BadResult as exc:
            if run.returncode:  # a failed command whose stdout merely held some JSON: the failure is the news
                return self._no_result(run, **tails)
            return _failed("bad_result", str(exc), metrics=metrics_of(raw), **tails)
        return Outcome(status=TrialStatus.SUCCEEDED, score=score, metrics=metrics, **tails)

    def _harness_error(self, error: Any, **tails: Any) -> Outcome:
        """Turn the harness's {"type", "message", "traceback", "error_class"} record into an outcome."""
        if not isinstance(error, dict):
            return _failed("bad_result", f"malformed error record from the harness: {error!r:.200}", **tails)
        kind, message = str(error.get("type", "Exception")), str(error.get("message", ""))
        error_class = str(error.get("error_class") or f"crash:{kind}")
        if error_class == "bad_evaluator":
            return _failed(error_class, message, **tails)
        lines = str(error.get("traceback", "")).rstrip().splitlines()[-TRACEBACK_LINES:]
        headline = f"{kind}: {message}" if message else kind
        if kind == "MemoryError":
            limit = self.task.config.limits.memory_mb
            headline = f"{headline} under the memory limit (memory_mb={limit})"
            error_class = "killed_by_limit"
        return _failed(error_class, headline + "\n" + "\n".join(lines), **tails)

    def _no_result(self, run: SandboxResult, **tails: Any) -> Outcome:
        """Classify a run that left no result: killed by a limit or a signal, a failed exit, or silence."""
        code = run.returncode if run.returncode is not None else -signal.SIGKILL
        limits = self.task.config.limits
        is_shell = self.task.evaluator_path is None
        sig = -code if code < 0 else (code - 128 if is_shell and code > 128 else 0)
        if sig in LIMIT_SIGNALS:
            reason = {
                signal.SIGKILL: f"killed by SIGKILL (memory limit memory_mb={limits.memory_mb} or OOM)",
                signal.SIGXCPU: f"CPU-time limit exceeded (cpu_s={limits.cpu_s}, SIGXCPU)",
                signal.SIGXFSZ: "file-size limit exceeded (SIGXFSZ)",
            }[signal.Signals(sig)]
            return _failed("killed_by_limit", reason + _stderr_hint(run), **tails)
        if code < 0:
            name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
            return _failed(f"crash:{name}", f"evaluator killed by {name}" + _stderr_hint(run), **tails)
        if code != 0:
            return _failed(f"exit:{code}", f"evaluator exited with code {code} and no valid result"
                           + _stderr_hint(run), **tails)
        where = "no result file"
        if is_shell:
            where = "no result file at $EVOFORGE_RESULT and no JSON object line on stdout"
        return _failed("bad_result", f"evaluator finished but reported no result ({where})", **tails)


def _failed(error_class: str, message: str, **fields: Any) -> Outcome:
    return Outcome(status=TrialStatus.FAILED, error_class=error_class, error_message=message, **fields)


def _tail(data: bytes) -> str:
    return data[-TAIL_CHARS:].decode("utf-8", errors="replace")


def _stderr_hint(run: SandboxResult) -> str:
    lines = run.stderr_tail.decode("utf-8", errors="replace").strip().splitlines()[-5:]
    return ("; stderr ends with:\n" + "\n".join(lines)) if lines else ""

"""How one stage run ended, as the Engineer records it: SUCCEEDED with a score and metrics, FAILED with an error class
and a reason a person can act on (a limit, a signal, a crash with its traceback's tail, a bad result), or PRUNED
when a gate stopped it."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoforge.config import StageConfig, TaskConfig
from evoforge.experiment.harness import ERROR_KEY
from evoforge.experiment.result import (
    BadResult,
    check_schema,
    last_json_line,
    metrics_of,
    read_result_file,
    validate,
)
from evoforge.experiment.sandbox import SandboxResult
from evoforge.models import Outcome, StageResult, TrialStatus

ASI_RESULT_FILE = "results.json"  # what an ASI-Evolve eval.sh writes in its working folder
TAIL_CHARS = 2048
TRACEBACK_LINES = 12
LIMIT_SIGNALS = (signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ)


@dataclass(frozen=True)
class Verdicts:
    """Classifies the stage runs of one task: `harness` (a Python evaluator reporting through the harness, else a
    command), `implicit` (the task declares no stages), `asi` (the ASI-Evolve layout)."""

    config: TaskConfig
    harness: bool
    implicit: bool
    asi: bool

    def command_result(self, run: SandboxResult, result_path: Path) -> Reported | BadResult | None:
        """A command evaluator's result: the $EVOFORGE_RESULT file, else its last JSON object line on stdout."""
        try:
            raw = read_result_file(result_path)
            if raw is None:
                raw = last_json_line(run.stdout_tail.decode("utf-8", errors="replace"))
        except BadResult as exc:
            return exc
        return None if raw is None else Reported(raw)

    def classify(self, run: SandboxResult, reported: Reported | BadResult | None,
                  stage: StageConfig) -> StageResult:
        """How the stage ended: SUCCEEDED with a score, FAILED with a reason, or PRUNED when it was stopped."""
        done = {"name": stage.name, "seconds": run.seconds}
        if run.stopped:
            return StageResult(status=TrialStatus.PRUNED, **done)
        outcome = self.outcome(run, reported, stage.timeout_s, stage.name)
        return StageResult(status=outcome.status, score=outcome.score, metrics=outcome.metrics,
                           error_class=outcome.error_class, error_message=outcome.error_message, **done)

    def outcome(self, run: SandboxResult, reported: Reported | BadResult | None, timeout_s: float,
                 stage: str | None = None) -> Outcome:
        tails = {"seconds": run.seconds, "stdout_tail": tail(run.stdout_tail),
                 "stderr_tail": tail(run.stderr_tail)}
        if run.limit == "disk_limit":
            return failed("disk_limit", run.limit_reason, **tails)
        if run.timed_out:
            what = "timeout_s" if self.implicit else "the stage's timeout_s"
            return failed("timeout", f"evaluation exceeded {what}={timeout_s:g}; its processes were killed",
                           **tails)
        if isinstance(reported, BadResult):
            return failed("bad_result", str(reported), **tails)
        if reported is None:
            return self._no_result(run, **tails)
        raw = reported.value
        if self.harness and isinstance(raw, dict) and ERROR_KEY in raw:
            return self._harness_error(raw[ERROR_KEY], **tails)
        if self.asi and isinstance(raw, dict) and raw.get("success") is not True:
            return failed("reported_failure", asi_failure(raw), metrics=metrics_of(raw), **tails)
        try:
            score, metrics = validate(raw, self.config.objective.metric)
            check_schema(raw, self.config.metrics, None if self.implicit else stage)
        except BadResult as exc:
            if run.returncode:  # a failed command whose stdout merely held some JSON: the failure is the news
                return self._no_result(run, **tails)
            return failed("bad_result", str(exc), metrics=metrics_of(raw), **tails)
        return Outcome(status=TrialStatus.SUCCEEDED, score=score, metrics=metrics, **tails)

    def _harness_error(self, error: Any, **tails: Any) -> Outcome:
        """Turn the harness's {"type", "message", "traceback", "error_class"} record into an outcome."""
        if not isinstance(error, dict):
            return failed("bad_result", f"malformed error record from the harness: {error!r:.200}", **tails)
        kind, message = str(error.get("type", "Exception")), str(error.get("message", ""))
        error_class = str(error.get("error_class") or f"crash:{kind}")
        if error_class == "bad_evaluator":
            return failed(error_class, message, **tails)
        lines = traceback_tail(str(error.get("traceback", "")))
        headline = f"{kind}: {message}" if message else kind
        if kind == "MemoryError":
            limit = self.config.limits.memory_mb
            headline = f"{headline} under the memory limit (memory_mb={limit})"
            error_class = "killed_by_limit"
        return failed(error_class, headline + "\n" + "\n".join(lines), **tails)

    def _no_result(self, run: SandboxResult, **tails: Any) -> Outcome:
        """Classify a run that left no result: killed by a limit or a signal, a failed exit, or silence."""
        code = run.returncode if run.returncode is not None else -signal.SIGKILL
        limits = self.config.limits
        is_shell = not self.harness
        sig = -code if code < 0 else (code - 128 if is_shell and code > 128 else 0)
        if sig in LIMIT_SIGNALS:
            reason = {
                signal.SIGKILL: f"killed by SIGKILL (memory limit memory_mb={limits.memory_mb} or OOM)",
                signal.SIGXCPU: f"CPU-time limit exceeded (cpu_s={limits.cpu_s}, SIGXCPU)",
                signal.SIGXFSZ: "file-size limit exceeded (SIGXFSZ)",
            }[signal.Signals(sig)]
            return failed("killed_by_limit", reason + stderr_hint(run), **tails)
        if code < 0:
            name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
            return failed(f"crash:{name}", f"evaluator killed by {name}" + stderr_hint(run), **tails)
        if code != 0:
            return failed(f"exit:{code}", f"evaluator exited with code {code} and no valid result"
                           + stderr_hint(run), **tails)
        if not is_shell:
            return failed("early_exit", "the evaluator's process exited (code 0) before evaluate() returned, so "
                           "nothing was reported (did the candidate, running in that process, exit it?)", **tails)
        where = "no result file at $EVOFORGE_RESULT and no JSON object line on stdout"
        return failed("bad_result", f"evaluator finished but reported no result ({where})", **tails)


@dataclass(frozen=True)
class Reported:
    """The value an evaluator reported (any JSON value, None included)."""

    value: Any


def traceback_tail(text: str, limit: int = TRACEBACK_LINES) -> list[str]:
    """The last `limit` lines of a traceback, starting at a whole frame ("  File ..."): a cut never begins with a
    stray source or `^^^^` marker line (fewer lines, then, when a frame would be cut)."""
    lines = text.rstrip().splitlines()
    tail = lines[-limit:]
    if len(lines) > limit:
        starts = [i for i, line in enumerate(tail) if line.startswith("  File ")]
        tail = tail[starts[0]:] if starts else tail[-1:]
    return tail


def asi_failure(raw: dict[str, Any]) -> str:
    """Why an ASI-Evolve eval.sh said success is not true: its `error` (or `temp.error`), else that alone."""
    temp = raw.get("temp") if isinstance(raw.get("temp"), dict) else {}
    error = raw.get("error") or temp.get("error")
    said = f"success={json.dumps(raw.get('success'))}" if "success" in raw else "no 'success' entry"
    return f"eval.sh reported {said} in {ASI_RESULT_FILE}" + (f": {error}" if error else "")


def failed(error_class: str, message: str, **fields: Any) -> Outcome:
    return Outcome(status=TrialStatus.FAILED, error_class=error_class, error_message=message, **fields)


def tail(data: bytes) -> str:
    return data[-TAIL_CHARS:].decode("utf-8", errors="replace")


def stderr_hint(run: SandboxResult) -> str:
    lines = run.stderr_tail.decode("utf-8", errors="replace").strip().splitlines()[-5:]
    return ("; stderr ends with:\n" + "\n".join(lines)) if lines else ""

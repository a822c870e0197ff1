"""The Engineer: writes a candidate into its trial folder, checks it statically, runs the task's evaluator on it in
the sandbox, stage by stage, under the gates, and turns what happened into an `Outcome` (a score and metrics, or
an error class with a clear reason, or the gate that pruned it).

A Python evaluator runs through the harness with the trial folder as working directory and reports through a
channel of its own (see broker.py), which also starts its candidate in a separate sandbox on request; a command
evaluator runs through /bin/sh in the trial folder too and reports via the file named by EVOFORGE_RESULT or its
last JSON stdout line (in the ASI-Evolve layout: results.json in the trial folder, with eval_score and success).
Each stage learns its name from EVOFORGE_STAGE (and `{stage}` in a command, ctx["stage"] in Python). The Engineer
prepares each stage run (a `StageJob`) and classifies how it ended (verdict.py); the task's executor (executors/:
this machine's sandbox, or a Ray node's) runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shlex
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoforge.config import StageConfig
from evoforge.experiment.disk import MB, clear_trial
from evoforge.experiment.executors import Executor, StageJob, make_executor
from evoforge.experiment.gates import check_static, program_fingerprint
from evoforge.experiment.integrity import EvaluatorSeal
from evoforge.experiment.launch import HARNESS
from evoforge.experiment.sandbox import SandboxResult, child_env
from evoforge.experiment.stages import Cascade, StageRun
from evoforge.experiment.verdict import ASI_RESULT_FILE, Reported, Verdicts, tail, traceback_tail
from evoforge.models import EvaluationHistory, GateDecision, Outcome, StageResult, Trial, TrialStatus
from evoforge.task.loader import Task
from evoforge.telemetry import ENV_VAR as TELEMETRY_VAR

__all__ = ["ASI_RESULT_FILE", "Engineer", "StageFiles", "traceback_tail"]
RESULT_FILE = "result.json"
TELEMETRY_FILE = "telemetry.jsonl"
IMPLICIT_STAGE = "main"
RESOLVED_KEPT = 16  # trial folders started ahead whose resolved path is kept once their trial no longer waits


@dataclass(frozen=True)
class StageFiles:
    """Where one stage's result, telemetry and logs live in the trial folder."""

    result: Path
    telemetry: Path
    stdout: Path
    stderr: Path

    @classmethod
    def of(cls, trial_dir: Path, stage: str | None, repeat: int = 0) -> StageFiles:
        """The implicit stage (stage None) keeps the plain names; a declared stage adds its name, a repeat after the
        first its number (`stdout.full.r2.log`)."""
        infix = (f".{stage}" if stage is not None else "") + (f".r{repeat}" if repeat else "")
        return cls(trial_dir / f"result{infix}.json", trial_dir / f"telemetry{infix}.jsonl",
                   trial_dir / f"stdout{infix}.log", trial_dir / f"stderr{infix}.log")


class Engineer:
    """Evaluates candidates for one task; several `evaluate` calls may run at once in one event loop."""

    def __init__(self, task: Task, *, env_passthrough: Sequence[str] = (), executor: Executor | None = None) -> None:
        self.task = task
        self.executor = executor if executor is not None else make_executor(task.config.executor)
        self.env_passthrough = tuple(env_passthrough)
        self.implicit = task.config.stages is None
        self.stages = task.config.stages or [StageConfig(name=IMPLICIT_STAGE, timeout_s=task.config.timeout_s,
                                                         repeats=task.config.repeats)]
        self.asi = task.config.layout == "asi-evolve"
        self.verdicts = Verdicts(task.config, harness=task.evaluator_path is not None, implicit=self.implicit,
                                 asi=self.asi)
        self.seal = EvaluatorSeal.of(task)  # every stage checks that the evaluator is still this one
        evaluator = task.evaluator_path
        self._sealed = self.seal.hashes.get(str(evaluator)) if evaluator is not None else None
        self._ahead: dict[Path, _Ahead] = {}  # first stages started while their trials wait for a slot
        self._resolved: dict[Path, Path] = {}  # the trial folder of each of those, as given → resolved
        self._task_dir = str(task.root.resolve())  # the task folder does not move during a run
        # The evaluations' environment is evoforge's as the run starts (less secrets), taken once: a library evoforge
        # loads mid-run (threadpoolctl sets KMP_DUPLICATE_LIB_OK) changes neither what a trial sees nor the warm
        # workers' key (which would start a new worker per slot), and no stage decodes os.environ again.
        self._environ = child_env({}, passthrough=self.env_passthrough)

    async def start_ahead(self, code: str, trial_dir: Path, *, seed: int | None = None) -> None:
        """Start the first stage of `evaluate(code, trial_dir, seed=seed)` now, while the trial waits for its
        evaluation slot: the jail and the harness's interpreter start, and the harness waits for its channel's
        first line, which `evaluate` sends. Nothing of the candidate or the evaluator runs before that (the
        evaluator is imported, and the stage's clock starts, after it), so the evaluation is the same as one
        started then; only the start's latency is hidden. A Python evaluator only; `drop_ahead` (or `evaluate`)
        kills one not used."""
        given = Path(trial_dir)
        trial_dir = given.resolve()
        if self.task.evaluator_path is None or trial_dir in self._ahead:
            return  # a command runs as soon as it starts
        if seed is None and self.task.config.seeded:
            seed = 0  # as `evaluate` decides
        trial_dir.mkdir(parents=True, exist_ok=True)
        program_path = trial_dir / self.task.program_name
        program_path.write_text(code, encoding="utf-8")
        if check_static(code, self.task) is not None:
            return
        job = self._job(self.stages[0], program_path, trial_dir, seed)
        try:
            started = await self.executor.start(job)
        except OSError:  # e.g. no process could be started now: `evaluate` starts it in its turn, and says why
            return
        if started is not None:  # else the executor cannot start ahead (GPU slots, a Ray node)
            self._ahead[trial_dir] = _Ahead(job, started, seed, code)
            self._resolved[given] = trial_dir

    async def drop_ahead(self, trial_dir: Path) -> None:
        """Kill the stage started ahead for `trial_dir`, if `evaluate` did not use it."""
        if self._ahead:  # else nothing to drop (the usual case: `evaluate` took it)
            await self._drop(self._resolve(trial_dir))

    async def _drop(self, resolved: Path) -> None:
        """Kill the stage started ahead for the trial folder `resolved` (as `_resolve` gives it), if any."""
        ahead = self._ahead.pop(resolved, None)
        if ahead is not None:
            await ahead.abandon()

    def _resolve(self, trial_dir: Path) -> Path:
        """`trial_dir` resolved (as `start_ahead` resolved it, for a trial started ahead or evaluated since: the
        caller's `drop_ahead` after `evaluate` walks no folder again)."""
        if len(self._resolved) > len(self._ahead) + RESOLVED_KEPT:  # forget the trials no longer waiting
            self._resolved = {g: r for g, r in self._resolved.items() if r in self._ahead}
        given = Path(trial_dir)
        return self._resolved.get(given) or given.resolve()

    async def evaluate(self, code: str, trial_dir: Path, history: EvaluationHistory | None = None, *,
                       seed: int | None = None) -> Outcome:
        """Write `code` as trial_dir / task.program_name, gate it, run its stages, and return the outcome.

        `history` (past stage scores, curves and costs, built by the loop) is what the gates compare with. A `seed`
        reaches the evaluator as EVOFORGE_SEED (ctx["seed"] in Python, `{seed}` in a command): repeats of one
        program with different seeds measure the evaluation's noise.
        """
        if seed is None and self.task.config.seeded:
            seed = 0  # a seeded evaluator's first evaluation of a program; a champion's repeats use 1, 2, …
        trial_dir = self._resolve(trial_dir)
        program_path = trial_dir / self.task.program_name
        ahead = self._ahead.get(trial_dir)
        if ahead is None or ahead.code != code:  # else `start_ahead` wrote this program there and it passed the
            trial_dir.mkdir(parents=True, exist_ok=True)  # static gate (a rejected one is not started ahead)
            program_path.write_text(code, encoding="utf-8")
            rejected = check_static(code, self.task)
            if rejected is not None:
                await self._drop(trial_dir)
                return Outcome(status=TrialStatus.FAILED, error_class=f"static:{rejected.evidence['check']}",
                               error_message=rejected.reason, decisions=(rejected,))

        async def launch(stage: StageConfig, stop: asyncio.Event) -> StageRun:
            return await self._run_repeats(stage, stop, program_path, trial_dir, seed)

        cascade = Cascade(
            stages=self.stages, gates=self.task.config.gates, direction=self.task.config.objective.direction,
            history=history or EvaluationHistory(), launch=launch,
            telemetry_path=lambda name: self._files(trial_dir, name).telemetry,
        )
        try:
            return await cascade.run()
        finally:
            if self._ahead:  # the trial's own (a stage other than its first, a seed that differed) is dropped
                await self._drop(trial_dir)

    def reuse(self, previous: Trial) -> Outcome:
        """The outcome of a trial whose program is an exact duplicate of `previous` (see `program_fingerprint`):
        nothing runs; the recorded result is carried over and the evaluation it did not repeat counts as saved."""
        fingerprint = program_fingerprint(previous.code, self.task.program_name)
        decision = GateDecision(
            gate="duplicate", stage=None, action="reuse",
            reason=f"same program as trial #{previous.id} (comments and whitespace aside); its outcome is reused",
            evidence={"trial": previous.id, "fingerprint": fingerprint},
        )
        status = previous.status if previous.status.finished else TrialStatus.FAILED
        return Outcome(status=status, score=previous.score, metrics=dict(previous.metrics),
                       error_class=previous.error_class, error_message=previous.error_message, seconds=0.0,
                       seconds_saved=previous.seconds, decisions=(decision,), suspect=previous.suspect,
                       reused_from=previous.id)

    def _files(self, trial_dir: Path, stage: str, repeat: int = 0) -> StageFiles:
        return StageFiles.of(trial_dir, None if self.implicit else stage, repeat)

    async def _run_repeats(self, stage: StageConfig, stop: asyncio.Event, program_path: Path, trial_dir: Path,
                           seed: int | None) -> StageRun:
        """Run the stage `stage.repeats` times, one after another, with seeds seed·k … seed·k + k − 1 (k the
        repeats; a champion's re-evaluation with seed 1 thus gets other seeds than the first evaluation's). The
        first repeat that does not succeed is the stage's outcome; else the score is the repeats' mean, and the
        metrics keep every repeat's score (`score_repeats`) and the standard error (`score_stderr`). Curve gates
        watch the first repeat's telemetry."""
        k = stage.repeats
        if k == 1:
            return await self._run_stage(stage, stop, program_path, trial_dir, seed)
        runs: list[StageRun] = []
        for repeat in range(k):
            run = await self._run_stage(stage, stop, program_path, trial_dir, (seed or 0) * k + repeat, repeat)
            runs.append(run)
            if run.result.status is not TrialStatus.SUCCEEDED or run.result.score is None:
                if run.result.error_message:
                    message = f"repeat {repeat + 1} of {k}: {run.result.error_message}"
                    run = dataclasses.replace(run, result=dataclasses.replace(run.result, error_message=message))
                return run
        scores = [float(r.result.score or 0.0) for r in runs]
        mean = statistics.fmean(scores)
        stderr = statistics.stdev(scores) / math.sqrt(k)
        last = runs[-1]
        metrics = {**last.result.metrics, self.task.config.objective.metric: mean, "score_repeats": scores,
                   "score_stderr": stderr}
        result = dataclasses.replace(last.result, score=mean, metrics=metrics,
                                     seconds=sum(r.result.seconds for r in runs))
        return dataclasses.replace(last, result=result)

    async def _run_stage(self, stage: StageConfig, stop: asyncio.Event, program_path: Path,
                         trial_dir: Path, seed: int | None = None, repeat: int = 0) -> StageRun:
        """Run one stage's evaluator process (stopped when `stop` is set) and classify how it ended."""
        self.seal.check()  # before the harness goes: it imports the evaluator after that
        ahead = self._ahead.pop(trial_dir, None) if repeat == 0 and stage is self.stages[0] else None
        if ahead is not None and ahead.seed != seed:
            await ahead.abandon()
            ahead = None
        job = ahead.job if ahead is not None else self._job(stage, program_path, trial_dir, seed, repeat)
        done = await self.executor.run(job, stop, ahead.handle if ahead is not None else None)
        run = done.run
        if done.lost is not None:
            return StageRun(StageResult(status=TrialStatus.FAILED, name=stage.name, seconds=run.seconds,
                                        error_class="executor_lost", error_message=done.lost), "", "")
        if not job.harness:
            run = self._contain_disk(run, trial_dir)
            result_path = trial_dir / ASI_RESULT_FILE if self.asi else job.result_path
            return StageRun(self.verdicts.classify(run, self.verdicts.command_result(run, result_path), stage),
                            tail(run.stdout_tail), tail(run.stderr_tail))
        reported = Reported(done.result) if done.reported else None
        if run.limit is None and done.limits_hit:  # the candidate's own jail outgrew the trial's disk
            limit, _, why = done.limits_hit[0].partition(": ")
            run = dataclasses.replace(run, limit=limit, limit_reason=f"the candidate's run: {why}")
        run = self._contain_disk(run, trial_dir)
        return StageRun(self.verdicts.classify(run, reported, stage), tail(run.stdout_tail), tail(run.stderr_tail))

    def _job(self, stage: StageConfig, program_path: Path, trial_dir: Path, seed: int | None,
             repeat: int = 0) -> StageJob:
        """One run of `stage` as the executor takes it; an earlier run's result files are removed first."""
        files = self._files(trial_dir, stage.name, repeat)
        files.result.unlink(missing_ok=True)
        if self.asi:
            (trial_dir / ASI_RESULT_FILE).unlink(missing_ok=True)
        argv, cwd = self._command(program_path, trial_dir, stage.name, seed)
        return StageJob(argv=argv, cwd=cwd, env=self._stage_env(stage, trial_dir, files, seed),
                        timeout_s=stage.timeout_s, limits=self.task.config.limits, stdout_path=files.stdout,
                        stderr_path=files.stderr, telemetry_path=files.telemetry, result_path=files.result,
                        harness=self.task.evaluator_path is not None, trial_dir=trial_dir,
                        hidden=tuple(self.task.private_paths), label=f"{trial_dir.name}, stage {stage.name}",
                        evaluator_sha256=self._sealed)

    def _stage_env(self, stage: StageConfig, trial_dir: Path, files: StageFiles, seed: int | None) -> dict[str, str]:
        """The environment of one stage's evaluator process."""
        extra = {
            "EVOFORGE_TRIAL_DIR": str(trial_dir),
            "EVOFORGE_TASK_DIR": self._task_dir,
            TELEMETRY_VAR: str(files.telemetry),
            "EVOFORGE_STAGE": stage.name,
            "EVOFORGE_STAGE_ARGS": json.dumps(stage.args),
            "EVOFORGE_LAYOUT": self.task.config.layout,
        }
        if seed is not None:
            extra["EVOFORGE_SEED"] = str(seed)
        if self.task.evaluator_path is None:
            extra["EVOFORGE_RESULT"] = str(files.result)  # a command evaluator reports through a file
        return {**self._environ, **extra}

    def _contain_disk(self, run: SandboxResult, trial_dir: Path) -> SandboxResult:
        """After a disk_limit stop: remove what the trial wrote (its program and logs stay) and say so."""
        if run.limit != "disk_limit":
            return run
        freed = clear_trial(trial_dir, {self.task.program_name})
        return dataclasses.replace(run, limit_reason=f"{run.limit_reason}; the trial was stopped and what it wrote "
                                   f"removed ({freed // MB} MB freed; its program and logs kept)")

    def _command(self, program_path: Path, trial_dir: Path, stage: str,
                 seed: int | None = None) -> tuple[list[str], Path]:
        evaluator = self.task.evaluator_path
        if evaluator is not None:
            harness = [sys.executable, "-m", HARNESS]
            return [*harness, str(evaluator), str(program_path)], trial_dir
        command = (self.task.config.command or "").replace("{program}", shlex.quote(str(program_path)))
        command = command.replace("{stage}", shlex.quote(stage))
        command = command.replace("{seed}", str(seed) if seed is not None else "0")
        command = command.replace("{task}", shlex.quote(self._task_dir))
        return ["/bin/sh", "-c", command], trial_dir

@dataclass
class _Ahead:
    """A trial's first stage started ahead by the executor, waiting to be let go by `_run_stage`."""

    job: StageJob
    handle: Any  # what the executor's `start` returned (the local executor's: a harness waiting in its jail)
    seed: int | None
    code: str  # the program written into the trial folder

    @property
    def started(self) -> Any:
        """The sandboxed process started ahead (the local executor's)."""
        return self.handle.started

    async def abandon(self) -> None:
        await self.handle.abandon()

"""Starting, joining and resuming runs: wires a task, its record and the pillars into a Conductor (the public API).

`evoforge.run(task_path, ...)` (with `join`: a second runner on a run of a shared record) and
`evoforge.resume(run_dir, ...)` are what the CLI calls, and what scripts may call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evoforge.analysis import make_analyzer
from evoforge.config import RunSettings, choose_models
from evoforge.errors import EvoforgeError, RunError
from evoforge.experiment import Engineer
from evoforge.experiment.executors import make_executor
from evoforge.experiment.integrity import EvaluatorSeal
from evoforge.experiment.isolation import describe_isolation
from evoforge.interrupts import HeldInterrupt
from evoforge.learning import Learning, open_knowledge_base
from evoforge.llm.client import client_for_spec
from evoforge.loop import Conductor
from evoforge.memory.claims import new_runner_id
from evoforge.memory.locations import run_file
from evoforge.memory.record import Record, record_file, run_file_id, write_run_file
from evoforge.memory.record import record_url as existing_record_url
from evoforge.memory.sampling import make_sampler
from evoforge.models import Trial, TrialStatus
from evoforge.observer import Observer
from evoforge.research import make_proposer
from evoforge.run_lock import run_lock
from evoforge.task import Task, load_task
from evoforge.task.loader import task_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    """How a run ended: why, its best trial and the count of trials per status."""

    run_dir: Path
    stop_reason: str
    best: Trial | None
    counts: dict[str, int]
    proposer: str
    interrupted: bool = False


def default_run_dir(task: Task) -> Path:
    return Path("runs") / f"{task.config.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def run(
    task_path: str | Path,
    *,
    run_dir: str | Path | None = None,
    settings: RunSettings | None = None,
    observer: Observer | None = None,
    record_url: str | None = None,
    join: int | None = None,
) -> RunSummary:
    """Start a new run of the task in `run_dir` (which must not hold a record yet) and run it to its stopping rule.
    `record_url` keeps the record in that database (any SQLAlchemy URL, e.g. PostgreSQL) instead of
    RUN_DIR/record.db; the run folder then names it in record.url, and the run in run.json. With `join`, this
    process is one more runner of that run of the record (see `_join`)."""
    task = load_task(task_path)
    if join is not None:
        return _join(task, join, run_dir=run_dir, settings=settings, observer=observer, record_url=record_url)
    settings = settings or RunSettings()
    if settings.target_score is None and task.config.target_score is not None:  # --target-score overrides it
        settings = settings.model_copy(update={"target_score": task.config.target_score})
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(task)
    # refused before any record is made: too few GPUs here, no ray package, no Ray node with the resources
    make_executor(task.config.executor, ray_address=settings.ray_address, concurrency=settings.concurrency).close()
    run_path.mkdir(parents=True, exist_ok=True)
    with run_lock(run_path):
        if record_file(run_path, must_exist=False).exists() or existing_record_url(run_path) is not None:
            raise RunError(f"{run_path} already holds a run: use `evoforge resume {run_path}` or pick another "
                           "--run-dir")
        with HeldInterrupt() as held:  # a Ctrl-C from the run's first row on is recorded as the run's end
            return _start_new(task, run_path, settings, observer, record_url, held)


def _start_new(task: Task, run_path: Path, settings: RunSettings, observer: Observer | None,
               record_url: str | None, held: HeldInterrupt) -> RunSummary:
    """The record and its new run, then the run driven (under the run folder's lock)."""
    record = Record.for_run_dir(run_path, create=True, url=record_url)
    config = {
        "task_path": str(task.root),
        "settings": settings.knobs(),  # the stopping rule is kept apart (`stopping`), once
        "task_config": task.config.model_dump(mode="json"),
    }
    run_id = record.create_run(
        task_name=task.config.name, config=config, seed=settings.seed,
        task_snapshot=task_snapshot(task), stopping=settings.stopping(),
    )
    write_run_file(run_path, run_id, runner=new_runner_id())
    return _drive(task, record, run_path, settings, observer, held)


def _join(task: Task, run_id: int, *, run_dir: str | Path | None, settings: RunSettings | None,
          observer: Observer | None, record_url: str | None) -> RunSummary:
    """One more runner on run `run_id` of the record at `record_url` (another machine, most often): its own run
    folder (record.url, run.json naming the run and this runner, trials/<id>/ for the trials it evaluates, its
    knowledge base) and the run's settings as recorded, but for what belongs to this machine (concurrency,
    prefetch, the LLM, the knowledge base, the lease, the Ray address). Trials are claimed through the record, so
    no two runners evaluate one; the trial budget is the run's, shared."""
    if record_url is None:
        raise RunError("--join RUN_ID needs --record URL: the database that holds the run")
    run_path = Path(run_dir) if run_dir is not None else Path(f"{default_run_dir(task)}-join{run_id}")
    run_path.mkdir(parents=True, exist_ok=True)
    with run_lock(run_path):
        if record_file(run_path, must_exist=False).exists() or existing_record_url(run_path) is not None:
            raise RunError(f"{run_path} already holds a run: use `evoforge resume {run_path}` or pick another "
                           "--run-dir")
        with Record(record_url, read_only=True, run_id=run_id) as probe:
            info = probe.run_info()  # RunError naming the database when it holds no such run
        if info.task_name != task.config.name:
            raise RunError(f"run {run_id} of that record is a run of task {info.task_name!r}, not of "
                           f"{task.config.name!r}: give that task's folder")
        local = (settings or RunSettings()).model_dump(include={"concurrency", "prefetch", "llm", "kb", "lease_s",
                                                                "ray_address"},
                                                       exclude_unset=True)
        joined = RunSettings.from_record({**info.config["settings"], **local}, info.stopping)
        with HeldInterrupt() as held:
            record = Record.for_run_dir(run_path, create=True, url=record_url, run_id=run_id)
            write_run_file(run_path, run_id, runner=new_runner_id(), task_path=str(task.root))
            return _drive(task, record, run_path, joined, observer, held)


def resume(
    run_dir: str | Path,
    *,
    trials: int | None = None,
    more: int | None = None,
    target_score: float | None = None,
    concurrency: int | None = None,
    observer: Observer | None = None,
) -> RunSummary:
    """Continue a run: trials left in flight are evaluated again, then the loop goes on to the run's stopping rule.

    The rule is the one the record keeps; `trials` (the run's new total, the seed included), `more` (that many
    trials beyond those recorded) and `target_score` change it, and the change is kept for later resumes.
    `concurrency` holds for this session only."""
    run_path = Path(run_dir)
    record_file(run_path)  # "no record at …" before the lock file is made there
    with run_lock(run_path):
        if run_file_id(run_path) is None:  # a folder from before run.json: its record's one run
            with Record.for_run_dir(run_path, read_only=True) as record:
                write_run_file(run_path, record.run_info().id, runner=new_runner_id())
        return _resume_locked(run_path, RuleChange(trials, more, target_score), concurrency, observer)


@dataclass(frozen=True)
class RuleChange:
    """What `resume` was asked to change in the stopping rule (None: keep)."""

    trials: int | None = None
    more: int | None = None
    target_score: float | None = None

    def apply(self, settings: RunSettings, counts: dict[str, int]) -> RunSettings:
        """The new rule, or RunError (one line) when it makes no sense for a run with these trial counts."""
        recorded = sum(counts.values())
        done = sum(n for status, n in counts.items() if TrialStatus(status).finished)
        trials = self.trials
        if trials is not None and self.more is not None:
            raise RunError("give --trials N (the run's new total) or --more N (N trials more), not both")
        if self.more is not None:
            if self.more < 1:
                raise RunError(f"--more {self.more}: give a number of trials of at least 1")
            trials = recorded + self.more
        elif trials is not None and trials <= done:
            raise RunError(f"--trials {trials} is a total, and this run has done {done} trials already: give a "
                           f"total above {done}, or --more N for N more trials")
        changes: dict[str, Any] = {}
        if trials is not None:
            changes["trials"] = trials
        if self.target_score is not None:
            changes["target_score"] = self.target_score
        return RunSettings.model_validate({**settings.model_dump(), **changes}) if changes else settings


def _resume_locked(run_path: Path, change: RuleChange, concurrency: int | None,
                   observer: Observer | None) -> RunSummary:
    record = Record.for_run_dir(run_path)
    try:
        info = record.run_info()
        settings = RunSettings.from_record(info.config["settings"], info.stopping)
        changed = change.apply(settings, record.counts())
        task_path = Path(run_file(run_path).get("task_path") or info.config["task_path"])  # a joiner: its own
        if not task_path.exists():
            raise RunError(f"the run's task folder {task_path} is gone; restore it to resume")
        task = load_task(task_path)
    except BaseException:
        record.close()
        raise
    if changed.stopping() != info.stopping:
        record.update_stopping(changed.stopping())
    if concurrency is not None:
        changed = RunSettings.model_validate({**changed.model_dump(), "concurrency": concurrency})
    return _drive(task, record, run_path, changed, observer)


def describe_proposer(name: str) -> str:
    if name == "offline":
        return "offline (tunes numeric constants only; design changes need an LLM: see --llm)"
    return name


def _learning(task: Task, record: Record, run_dir: Path, settings: RunSettings) -> Learning:
    """The cognition base, analyzer and review client of a run (the models as `choose_models` picks them)."""
    kb = open_knowledge_base(task, run_dir, settings.kb)
    single = choose_models(task.config.llm, settings.llm).single
    client = None if single is None else client_for_spec(single, task.config.llm)
    analyzer = make_analyzer(task, settings.llm)
    return Learning(task=task, record=record, kb=kb, analyzer=analyzer, client=client, run_label=str(run_dir))


def _drive(task: Task, record: Record, run_dir: Path, settings: RunSettings, observer: Observer | None,
           held: HeldInterrupt | None = None) -> RunSummary:
    """Assemble the run's pillars and run the conductor. However the run ends — its rule, an error that stops it, a
    Ctrl-C at any moment from here on (or one `held` back since the run's first row) — why is kept in the record
    (`evoforge status` shows it)."""
    interrupted, stop_reason, conductor, proposer_name = False, None, None, "none"
    try:
        if held is not None:
            held.release()
        record.act_as(_runner_of(run_dir), settings.lease_s)
        conductor = _assemble(task, record, run_dir, settings, observer)
        proposer_name = conductor.proposer.name
        _seal_evaluator(record, conductor.engineer.seal, task.root)
        if observer is not None:
            learning = conductor.learning
            notes = [f"knowledge base: {learning.kb.mode}, {learning.kb.count()} items",
                     f"analyzer: {learning.analyzer.name}",
                     f"sandbox: {describe_isolation(task.config.limits, task.evaluator_path)}"]
            observer.run_started(run_dir=run_dir, proposer=describe_proposer(proposer_name), settings=settings,
                                 done=len(conductor.population), notes=notes)
        stop_reason = asyncio.run(_run_and_close(conductor, conductor.proposer, conductor.learning))
    except KeyboardInterrupt:
        interrupted = True
        stop_reason = (f"interrupted (Ctrl-C); nothing is lost: `evoforge resume {run_dir}` continues the run "
                       "(trials in flight are run again)")
    except EvoforgeError as exc:  # the run could not go on: say why in `evoforge status` too
        stop_reason = str(exc)
        raise
    finally:
        if stop_reason is not None:
            record.save_state("stopped", {"reason": stop_reason})
        if conductor is not None:
            best, counts = conductor.state.best, conductor.population.counts()
        else:
            best, counts = record.best(task.config.objective.direction), record.counts()
        _retain_large_files(task, record, run_dir)
        record.close()
        if observer is not None:
            observer.run_finished()
    return RunSummary(run_dir=run_dir, stop_reason=stop_reason, best=best, counts=counts, proposer=proposer_name,
                      interrupted=interrupted)


def _seal_evaluator(record: Record, seal: EvaluatorSeal, task_root: Path) -> None:
    """Keep the evaluator's hashes in the record when the run starts; a resume checks them (EvaluatorChanged), and
    so does a runner joining the run (its task folder elsewhere: the files are compared by their place in it)."""
    recorded = record.load_state("evaluator")
    if recorded is None:
        record.save_state("evaluator", seal.hashes)
        return
    started_in = Path(str(record.run_info().config.get("task_path", task_root))).resolve()
    if started_in != task_root.resolve():
        recorded = {str(_moved(Path(path), started_in, task_root.resolve())): digest
                    for path, digest in recorded.items()}
    seal.matches(recorded)


def _moved(path: Path, old_root: Path, new_root: Path) -> Path:
    """`path` as it lies under `new_root` when it lay under `old_root` (a joiner's copy of the task), else as is."""
    return new_root / path.relative_to(old_root) if path.is_relative_to(old_root) else path


def _retain_large_files(task: Task, record: Record, run_dir: Path, keep_best: int = 3) -> None:
    """The retention rule for large trial files (limits.keep_files_mb), applied when a run session ends: the seed's and
    the best trials' folders stay whole, programs and failed trials' logs are kept, other files over the size go."""
    from evoforge.experiment.disk import retain

    try:
        trials = record.trials()
        direction = task.config.objective.direction
        scored = [tr for tr in trials  # a reused duplicate ran nothing: its folder holds no files of its own
                  if tr.status is TrialStatus.SUCCEEDED and tr.score is not None and tr.reused_from is None]
        scored.sort(key=lambda tr: (-tr.score if direction.value == "maximize" else tr.score, tr.id))
        keep = {tr.id for tr in scored[:keep_best]} | {tr.id for tr in trials[:1]}
        failed = {tr.id for tr in trials if tr.status is not TrialStatus.SUCCEEDED}
        retain(run_dir / "trials", keep, failed, task.config.limits.keep_files_mb,
               program_names=(task.program_name,))
    except Exception as exc:  # noqa: BLE001 - a clean-up must never hide how the run ended
        log.warning("retention of large trial files skipped: %s: %s", type(exc).__name__, exc)


def _assemble(task: Task, record: Record, run_dir: Path, settings: RunSettings,
              observer: Observer | None) -> Conductor:
    """The conductor of a run, with its proposer, knowledge, analyzer, sampler and engineer."""
    proposer = make_proposer(task, settings.llm, seed=settings.seed)
    learning = _learning(task, record, run_dir, settings)
    sampler = make_sampler(
        settings.sampler or task.config.research.sampler,
        seed=settings.seed, exploration=task.config.research.exploration,
        population=task.config.research.population, islands=task.config.research.islands,
        map_elites=task.config.research.map_elites, weighted=task.config.research.weighted,
    )
    return Conductor(
        task=task, record=record, run_dir=run_dir, settings=settings, proposer=proposer,
        engineer=Engineer(task, executor=make_executor(task.config.executor, ray_address=settings.ray_address,
                                                       concurrency=settings.concurrency)),
        sampler=sampler, learning=learning, observer=observer,
    )


def _runner_of(run_dir: Path) -> str:
    """The runner a run folder is (its run.json): a resume takes over at once the trials it left unfinished."""
    return str(run_file(run_dir).get("runner") or new_runner_id())


async def _run_and_close(conductor: Conductor, proposer: Any, learning: Learning) -> str:
    try:
        return await conductor.run()
    finally:
        conductor.shared.stop()
        await proposer.aclose()
        await learning.aclose()

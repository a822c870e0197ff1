"""The command line: init, run, resume, status, best, show, export, knowledge, (cli_results.py) eval, noise
and report, and (cli_runs.py) runs.

User errors (EvoforgeError, bad option values) print one line and exit with status 2; anything else is an internal
error (see evoforge/__main__.py, the entry point). Heavy modules (the loop, the LLM clients, numpy) are imported by
the commands that need them, so `--help`, `status`, `best` and `show` start fast.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from evoforge import __version__
from evoforge.cli_common import Command, console, fail, new_app, settings_error
from evoforge.cli_dashboard import register as register_dashboard
from evoforge.cli_knowledge import app as knowledge_app
from evoforge.cli_results import register as register_results
from evoforge.cli_runs import register as register_runs
from evoforge.errors import EvoforgeError

HELP = "evoforge: research as a closed loop (learn → design → experiment → analyze) over a program and its evaluator."
app = new_app(HELP)
app.add_typer(knowledge_app, name="knowledge")
register_results(app)  # eval, noise, report
register_dashboard(app)
register_runs(app)
_state = {"debug": False}

RunDirArg = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="a run directory (holds record.db)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
# RunSettings field → the option that sets it, for one-line messages about bad values
OPTIONS = {"budget_wall_s": "--budget-wall", "budget_eval_s": "--budget-eval", "lease_s": "--lease"}


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"evoforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show the whole traceback of an error")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                          callback=_version)] = False,
) -> None:
    """evoforge: research as a closed loop (learn → design → experiment → analyze)."""
    _state["debug"] = debug


def _fail(exc: Exception) -> NoReturn:
    if _state["debug"]:
        raise exc
    fail(exc)


def _fail_os(exc: OSError) -> NoReturn:
    """A file the command must read or write is out of reach (read-only folder, full disk): one line naming it."""
    if exc.filename is None:
        raise exc
    _fail(EvoforgeError(f"{exc.filename}: {exc.strerror or exc}"))


@app.command(cls=Command)
def init(
    directory: Annotated[Path | None, typer.Argument(help="folder to create (not with --from)")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help=(
        "a task folder in OpenEvolve's or ASI-Evolve's layout: write the task.yaml evoforge infers for it"))] = None,
) -> None:
    """Write a working example task to start from, or (--from) the task.yaml of a foreign task folder."""
    if (directory is None) == (from_ is None):
        _fail(EvoforgeError("give one of: a folder to create (evoforge init DIR) or a task folder in another "
                            "framework's layout (evoforge init --from DIR)"))
    try:
        if from_ is not None:
            from evoforge.task.foreign import write_inferred

            written = write_inferred(from_)
            console.print(f"wrote {written}; adjust it, then: evoforge run {from_}")
            return
        from evoforge.task.template import write_starter_task

        assert directory is not None
        path = write_starter_task(directory)
    except EvoforgeError as exc:
        _fail(exc)
    console.print(f"wrote a starter task in {path}; try: evoforge run {path} --llm offline --trials 10")


@app.command(cls=Command)
def run(
    task: Annotated[Path, typer.Argument(help="task folder (task.yaml, or an OpenEvolve / ASI-Evolve layout)")],
    run_dir: Annotated[Path | None, typer.Option(help="where the record and trial folders go")] = None,
    trials: Annotated[int, typer.Option(help="stop after N trials, the seed included")] = 40,
    concurrency: Annotated[int, typer.Option(help="evaluations in flight at once")] = 2,
    prefetch: Annotated[int | None, typer.Option(help="proposals prepared ahead (default 2 × concurrency)")] = None,
    llm: Annotated[str | None, typer.Option(help="'offline' or a model name (default: task/env)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    target_score: Annotated[float | None, typer.Option(help="stop once the best score reaches this")] = None,
    sampler: Annotated[str | None, typer.Option(
        help="parent sampler: greedy, random, ucb1, weighted, islands, map_elites (default: the task's)")] = None,
    kb: Annotated[str | None, typer.Option(help="shared knowledge base (path or URL)")] = None,
    record: Annotated[str | None, typer.Option(help="keep the record in this database (a SQLAlchemy URL, e.g. "
                                               "postgresql+psycopg://user@host/db), not RUN_DIR/record.db")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="stop proposing before LLM spend passes this")] = None,
    budget_tokens: Annotated[int | None, typer.Option(help="cap on LLM tokens, in + out")] = None,
    budget_wall: Annotated[float | None, typer.Option(help="cap on wall-clock seconds")] = None,
    budget_eval: Annotated[float | None, typer.Option(help="cap on evaluation seconds")] = None,
    join: Annotated[int | None, typer.Option(help="join run RUN_ID of the --record database as one more runner "
                                             "(its settings are the run's; `evoforge runs --record URL` lists "
                                             "them)", metavar="RUN_ID")] = None,
    lease: Annotated[float, typer.Option(help="seconds this runner holds a trial between heartbeats; past it "
                                         "another runner of the run takes the trial over")] = 60.0,
    ray_address: Annotated[str | None, typer.Option(help="run the stages on a Ray cluster: auto, ray://HOST:PORT, "
                                                    "HOST:PORT, or local (a Ray started here)")] = None,
) -> None:
    """Start a run of a task, or (--join) work on a run another runner started.

    It goes on until the stopping rule (trials, target score, budgets) holds."""
    from pydantic import ValidationError

    from evoforge.config import RunSettings
    from evoforge.progress import ProgressObserver
    from evoforge.runs import run as start_run

    try:
        settings = RunSettings(
            trials=trials, concurrency=concurrency, prefetch=prefetch, llm=llm, seed=seed, target_score=target_score,
            sampler=sampler,
            budget_usd=budget_usd, budget_tokens=budget_tokens, budget_wall_s=budget_wall, budget_eval_s=budget_eval,
            kb=kb, lease_s=lease, ray_address=ray_address,
        )
    except ValidationError as exc:
        _fail(EvoforgeError(settings_error(exc, OPTIONS)))
    if join is not None:  # the run's own settings, but for this machine's: those given here
        settings = RunSettings.model_validate(settings.model_dump(
            include={"concurrency", "prefetch", "llm", "kb", "lease_s"}, exclude_defaults=True))
    try:
        summary = start_run(task, run_dir=run_dir, settings=settings, observer=ProgressObserver(console),
                            record_url=record, join=join)
    except EvoforgeError as exc:
        _fail(exc)
    except OSError as exc:
        _fail_os(exc)
    _print_summary(summary)


@app.command(cls=Command)
def resume(
    run_dir: RunDirArg,
    trials: Annotated[int | None, typer.Option(help="the run's new total of trials, the seed included (kept)")] = None,
    more: Annotated[int | None, typer.Option(help="N trials more than the run has (kept as its new total)")] = None,
    target_score: Annotated[float | None, typer.Option(help="new target score")] = None,
    concurrency: Annotated[int | None, typer.Option(help="evaluations in flight at once")] = None,
) -> None:
    """Continue a run (after Ctrl-C or a crash too).

    Trials left in flight are evaluated again, then the run goes on to its stopping rule."""
    from pydantic import ValidationError

    from evoforge.progress import ProgressObserver
    from evoforge.runs import resume as resume_run

    try:
        summary = resume_run(
            run_dir, trials=trials, more=more, target_score=target_score, concurrency=concurrency,
            observer=ProgressObserver(console),
        )
    except ValidationError as exc:
        _fail(EvoforgeError(settings_error(exc, OPTIONS)))
    except EvoforgeError as exc:
        _fail(exc)
    except OSError as exc:
        _fail_os(exc)
    _print_summary(summary)


def _print_summary(summary: Any) -> None:
    if summary.interrupted:  # Ctrl-C: one line (it says how to continue), status 130
        console.print(f"stopped: {summary.stop_reason}", highlight=False, markup=False)
        raise typer.Exit(130)
    best = summary.best
    score = f"{best.score:.6g} (trial #{best.id})" if best is not None else "none"
    console.print(f"stopped: {summary.stop_reason}")
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n) or "none"
    console.print(f"best score: {score}   trials: {counts}")
    console.print(f"record: {summary.run_dir / 'record.db'}   next: evoforge best {summary.run_dir} --code")


@app.command(cls=Command)
def status(run_dir: RunDirArg, as_json: JsonOpt = False) -> None:
    """Counts per status, best score, time spent."""
    from evoforge.render import render_status
    from evoforge.views import run_overview

    try:
        overview = run_overview(run_dir)
    except EvoforgeError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(overview, indent=2, default=str))
    else:
        render_status(console, overview)


@app.command(cls=Command)
def best(
    run_dir: RunDirArg,
    code: Annotated[bool, typer.Option("--code", help="print the best program")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The best trial and its gain over the seed."""
    from evoforge.render import render_best
    from evoforge.views import best_view, trial_dict

    try:
        trial, seed = best_view(run_dir)
    except EvoforgeError as exc:
        _fail(exc)
    if trial is None:
        _fail(EvoforgeError(f"{run_dir}: no trial has a valid score yet"))
    if as_json:
        print(json.dumps({**trial_dict(trial, with_code=True), **seed}, indent=2, default=str))
    elif code:
        sys.stdout.write(trial.code if trial.code.endswith("\n") else trial.code + "\n")
    else:
        render_best(console, trial, seed)


@app.command(cls=Command)
def show(
    run_dir: RunDirArg,
    trial: Annotated[int, typer.Argument(help="trial id")],
    as_json: JsonOpt = False,
) -> None:
    """One trial in full.

    Hypothesis, outcome, metrics, digest, analysis, stages and gates, diff vs parent, LLM calls."""
    from evoforge.render import render_show
    from evoforge.views import show_view

    try:
        data = show_view(run_dir, trial)
    except EvoforgeError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render_show(console, data)


@app.command(cls=Command)
def export(
    run_dir: RunDirArg,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="jsonl or csv")] = ExportFormat.jsonl,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")] = None,
) -> None:
    """Every trial, one per line (jsonl) or row (csv)."""
    from evoforge.export import write_trials

    try:
        out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
        try:
            write_trials(run_dir, out, fmt.value)
        finally:
            if output:
                out.close()
    except EvoforgeError as exc:
        _fail(exc)


if __name__ == "__main__":
    from evoforge.__main__ import main as entry_point

    sys.exit(entry_point())

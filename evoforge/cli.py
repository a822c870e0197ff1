"""The command line: init, run, resume, status, best, show, export and knowledge (typer + rich).

User errors (EvoforgeError) are printed as one line and exit with status 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from evoforge.cli_knowledge import app as knowledge_app
from evoforge.errors import EvoforgeError
from evoforge.settings import RunSettings
from evoforge.views import (
    ProgressObserver,
    evaluation_detail,
    render_best,
    render_show,
    render_status,
    run_overview,
    trial_dict,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(knowledge_app, name="knowledge")
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

RunDirArg = Annotated[Path, typer.Argument(help="a run directory (holds record.db)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    """evoforge: research as a closed loop (learn → design → experiment → analyze)."""
    _state["debug"] = debug


def _fail(exc: Exception) -> None:
    if _state["debug"]:
        raise exc
    err_console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
    raise typer.Exit(2)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="folder to create")]) -> None:
    """Write a working example task to start from."""
    from evoforge.task.template import write_starter_task

    try:
        path = write_starter_task(directory)
    except EvoforgeError as exc:
        _fail(exc)
    console.print(f"wrote a starter task in {path}; try: evoforge run {path} --llm offline --trials 10")


@app.command()
def run(
    task: Annotated[Path, typer.Argument(help="task folder (holds task.yaml)")],
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
    budget_usd: Annotated[float | None, typer.Option(help="stop proposing before LLM spend passes this")] = None,
    budget_tokens: Annotated[int | None, typer.Option(help="cap on LLM tokens, in + out")] = None,
    budget_wall: Annotated[float | None, typer.Option(help="cap on wall-clock seconds")] = None,
    budget_eval: Annotated[float | None, typer.Option(help="cap on evaluation seconds")] = None,
) -> None:
    """Start a run of TASK and go until the stopping rule (trials, target, budgets) holds."""
    from evoforge.runs import run as start_run

    try:
        settings = RunSettings(
            trials=trials, concurrency=concurrency, prefetch=prefetch, llm=llm, seed=seed, target_score=target_score,
            sampler=sampler,
            budget_usd=budget_usd, budget_tokens=budget_tokens, budget_wall_s=budget_wall, budget_eval_s=budget_eval,
            kb=kb,
        )
        summary = start_run(task, run_dir=run_dir, settings=settings, observer=ProgressObserver(console))
    except (EvoforgeError, ValueError) as exc:
        _fail(exc)
    _print_summary(summary)


@app.command()
def resume(
    run_dir: RunDirArg,
    trials: Annotated[int | None, typer.Option(help="the run's new total of trials, the seed included (kept)")] = None,
    more: Annotated[int | None, typer.Option(help="N trials more than the run has (kept as its new total)")] = None,
    target_score: Annotated[float | None, typer.Option(help="new target score")] = None,
    concurrency: Annotated[int | None, typer.Option(help="evaluations in flight at once")] = None,
) -> None:
    """Continue a run: re-run trials left in flight, then go on to the stopping rule."""
    from evoforge.runs import resume as resume_run

    try:
        summary = resume_run(
            run_dir, trials=trials, more=more, target_score=target_score, concurrency=concurrency,
            observer=ProgressObserver(console),
        )
    except (EvoforgeError, ValueError) as exc:
        _fail(exc)
    _print_summary(summary)


def _print_summary(summary: Any) -> None:
    if summary.interrupted:  # Ctrl-C: one line (it says how to continue), status 130
        console.print(f"stopped: {summary.stop_reason}", highlight=False, markup=False)
        raise typer.Exit(130)
    best = summary.best
    score = f"{best.score:.6g} (trial #{best.id})" if best is not None else "none"
    console.print(f"stopped: {summary.stop_reason}")
    console.print(f"best score: {score}   trials: {summary.counts}")
    console.print(f"record: {summary.run_dir / 'record.db'}   next: evoforge best {summary.run_dir} --code")


@app.command()
def status(run_dir: RunDirArg, as_json: JsonOpt = False) -> None:
    """Counts per status, best score, time spent."""
    try:
        overview = run_overview(run_dir)
    except EvoforgeError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(overview, indent=2, default=str))
    else:
        render_status(console, overview)


@app.command()
def best(
    run_dir: RunDirArg,
    code: Annotated[bool, typer.Option("--code", help="print the best program")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The best trial of the run."""
    from evoforge.memory.record import Record

    try:
        record = Record.for_run_dir(run_dir)
        direction = _direction(record)
        trial = record.best(direction)
        record.close()
    except EvoforgeError as exc:
        _fail(exc)
    if trial is None:
        _fail(EvoforgeError(f"{run_dir}: no trial has a valid score yet"))
    if as_json:
        print(json.dumps(trial_dict(trial, with_code=True), indent=2, default=str))
    elif code:
        sys.stdout.write(trial.code if trial.code.endswith("\n") else trial.code + "\n")
    else:
        render_best(console, trial)


@app.command()
def show(
    run_dir: RunDirArg,
    trial: Annotated[int, typer.Argument(help="trial id")],
    as_json: JsonOpt = False,
) -> None:
    """One trial in full: hypothesis, outcome, digest, diff, LLM calls."""
    from evoforge.memory.record import Record

    try:
        record = Record.for_run_dir(run_dir)
        found = record.trial(trial)
        calls = record.llm_calls(trial)
        analyses = record.analyses(trial)
        detail = evaluation_detail(record, trial)
        record.close()
    except EvoforgeError as exc:
        _fail(exc)
    data = trial_dict(found, with_code=True)
    data.update(detail)
    data["llm_calls"] = [
        {"role": c.role, "model": c.model, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
         "latency_s": c.latency_s, "error": c.error}
        for c in calls
    ]
    data["analyses"] = [{"kind": a.kind, "text": a.text} for a in analyses]
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render_show(console, data)


@app.command()
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


def _direction(record: Any) -> Any:
    from evoforge.models import Direction

    cfg = record.run_info().config.get("task_config", {})
    return Direction(cfg.get("objective", {}).get("direction", "maximize"))


if __name__ == "__main__":
    app()

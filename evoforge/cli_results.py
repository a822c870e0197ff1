"""`evoforge eval`, `evoforge noise` and `evoforge report`: evaluate a program again (k times, with seeds), measure a
task's evaluation noise before a run, and write a run's research report. User errors print one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from evoforge.cli_common import Command, console, fail
from evoforge.errors import EvoforgeError

if TYPE_CHECKING:
    from evoforge.repeats import Spread

TaskArg = Annotated[Path, typer.Argument(metavar="TASK", help="a task folder (holds task.yaml)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


def _fail(exc: Exception) -> NoReturn:
    fail(exc)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _spread_dict(spread: Spread) -> dict[str, Any]:
    return {"k": spread.k, "failed": spread.failed, "scores": list(spread.scores), "mean": spread.mean,
            "sd": spread.sd, "stderr": spread.stderr, "smallest_real_difference": spread.smallest_real_difference()}


def _evaluate(task_dir: Path, program: Path | None, repeats: int, keep: Path | None) -> tuple[Spread, list[Any]]:
    from evoforge.repeats import run_repeats, spread_of
    from evoforge.task.loader import load_task

    if repeats < 1:
        raise EvoforgeError(f"--repeats {repeats}: give at least 1")
    task = load_task(task_dir)
    if program is None:
        code = task.seed_program
    else:
        try:
            code = Path(program).read_text(encoding="utf-8")
        except OSError as exc:
            raise EvoforgeError(f"cannot read the program {program}: {exc.strerror or exc}") from None
    outcomes = run_repeats(task, code, repeats, keep)
    return spread_of(outcomes), outcomes


def eval_program(
    task: TaskArg,
    program: Annotated[Path | None, typer.Argument(help="the program to evaluate (default: the task's seed)")] = None,
    repeats: Annotated[int, typer.Option("--repeats", "-k", help="evaluations, with seeds 0 … k−1")] = 1,
    keep: Annotated[Path | None, typer.Option("--keep", help="keep each evaluation's folder under this one")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a program with the task's evaluator, in the sandbox, k times: score per repeat, mean ± stderr."""
    try:
        spread, outcomes = _evaluate(task, program, repeats, keep)
    except EvoforgeError as exc:
        _fail(exc)
    if as_json:
        data = _spread_dict(spread)
        data["outcomes"] = [{"seed": i, "status": o.status.value, "score": o.score, "metrics": o.metrics,
                             "error_class": o.error_class, "error_message": o.error_message}
                            for i, o in enumerate(outcomes)]
        print(json.dumps(data, indent=2, default=str))
        return
    for seed, outcome in enumerate(outcomes):
        why = f"  {outcome.error_class}: {outcome.error_message}" if outcome.error_class else ""
        console.print(f"seed {seed}: {outcome.status.value} score {_number(outcome.score)}{why}", markup=False)
    console.print(f"mean {_number(spread.mean)} ± {_number(spread.stderr)} (standard error; {spread.k} scored, "
                  f"{spread.failed} failed)", markup=False)
    if spread.k == 0:
        raise typer.Exit(1)


def noise(
    task: TaskArg,
    k: Annotated[int, typer.Option("--k", help="evaluations of the seed program")] = 5,
    run: Annotated[Path | None, typer.Option("--run", help="a past run of this task: compare the noise with "
                                                           "the improvements its champion's lineage made")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the task's seed program k times and report the spread of its score: which differences are real."""
    from evoforge.repeats import typical_improvement
    from evoforge.task.loader import load_task

    try:
        if k < 2:
            raise EvoforgeError(f"--k {k}: the spread needs at least 2 evaluations")
        spread, _ = _evaluate(task, None, k, None)
        typical = typical_improvement(run, load_task(task).config.objective.direction) if run else None
    except EvoforgeError as exc:
        _fail(exc)
    smallest = spread.smallest_real_difference()
    noisy = typical is not None and smallest is not None and smallest > typical
    if as_json:
        print(json.dumps({**_spread_dict(spread), "typical_improvement": typical, "noise_exceeds_typical": noisy},
                         indent=2))
        return
    console.print(f"seed program, {spread.k} evaluations ({spread.failed} failed): mean {_number(spread.mean)}, "
                  f"sd {_number(spread.sd)}, stderr {_number(spread.stderr)}", markup=False)
    console.print(f"two programs evaluated {k} times each differ for real (≈95%) when their means differ by more than "
                  f"{_number(smallest)}", markup=False)
    if spread.sd == 0.0:
        console.print("the evaluation is deterministic: one evaluation per program is enough", markup=False)
    if typical is not None:
        console.print(f"improvements on the champion's lineage of {run}: median {_number(typical)}", markup=False)
    if noisy:
        console.print(f"warning: the noise ({_number(smallest)}) is larger than a typical improvement "
                      f"({_number(typical)}): use repeats, or a less noisy evaluator", style="yellow", markup=False)


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="a run directory (holds record.db)")],
    out: Annotated[Path | None, typer.Option("--out", help="the HTML file (default RUN_DIR/report.html); the "
                                                           "Markdown twin goes beside it")] = None,
) -> None:
    """Write the run's research report: self-contained HTML (plots inline) and Markdown."""
    from evoforge.report import PlotsUnavailable, write_report

    try:
        files = write_report(run_dir, out)
    except (EvoforgeError, PlotsUnavailable) as exc:
        _fail(exc)
    console.print(f"report: {files.html}", markup=False)
    console.print(f"markdown: {files.markdown}", markup=False)
    if files.champion is not None:
        console.print(f"champion's program: {files.champion}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval", cls=Command)(eval_program)
    app.command(cls=Command)(noise)
    app.command(cls=Command)(report)

"""Child-side runner for Python evaluators: imports the evaluator file by path, calls `evaluate`, reports JSON.

Usage: `python -m evoforge.experiment.harness <evaluator_path> <program_path>`, with $EVOFORGE_CHANNEL_FD naming an
inherited socket to the evoforge process. The harness takes that variable (and any EVOFORGE_RESULT) out of the
environment before loading the evaluator, so no candidate finds a result file or variable; the result goes back
through the socket once evaluate() has returned (a process that exits before that reports nothing, which evoforge
records as `early_exit`). Evaluators run their candidate through `evoforge.sandbox.run_candidate`, which uses the
same socket. The result is encoded with allow_nan=True so the parent can reject NaN with a clear reason; on failure
it reports {"__error__": {"type", "message", "traceback", "error_class"}} and exits 1. A two-parameter
`evaluate(path, ctx)` gets ctx = {"trial_dir", "task_dir", "stage", "stage_args", "seed"} (the stage from
EVOFORGE_STAGE / EVOFORGE_STAGE_ARGS, the seed from EVOFORGE_SEED or None); a stage S calls `evaluate_S` instead
when the evaluator defines it. An `async def evaluate` is run to completion with asyncio.run. It imports little at
start (asyncio, inspect and traceback only when an evaluator needs them): its start is most of a trivial
evaluation's time.

Under bwrap it is also the jail's supervisor: `python -m evoforge.experiment.harness --supervised OPTIONS --
EVALUATOR PROGRAM` (OPTIONS as supervisor.py's) makes this process the jail's PID 1, which runs the evaluation in a
forked child under the limits and supervises it as supervisor.py would, so one interpreter starts, not two.
That is the cold path; a warm worker's zygote (zygote.py) calls `_evaluate` in a fresh child of its own instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from evoforge import sandbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType
    from typing import Any

ERROR_KEY = "__error__"
SUPERVISED = "--supervised"  # the harness supervises itself (bwrap): supervisor options, then `--`
VARARGS = 0x04  # inspect.CO_VARARGS: the function takes *args


# (path, code object, blank module) of the evaluator compiled by a warm worker's zygote before it forked this child
# (zygote.py): what `load_evaluate` runs in place of reading and compiling the file at that path again, in the module
# the zygote made from it (blank_module) and never ran.
PRECOMPILED: tuple[str, Any, Any] | None = None


class BadEvaluator(Exception):
    """The evaluator file cannot be loaded or defines no callable `evaluate`."""


def blank_module(path: str) -> ModuleType:
    """A new module for the evaluator file at `path`, with its spec and loader, as an import by path makes one; not
    run yet."""
    spec = importlib.util.spec_from_file_location("evoforge_evaluator", path)
    if spec is None or spec.loader is None:
        raise BadEvaluator(f"evaluator file {path} cannot be imported as a Python module")
    return importlib.util.module_from_spec(spec)


def load_evaluate(path: str, stage: str | None = None) -> Callable[..., Any]:
    """Import the file at `path` as a module and return its `evaluate_<stage>` function when it defines one (as
    OpenEvolve's `evaluate_stage1` serves a stage named stage1), else its `evaluate` function."""
    if not os.path.isfile(path):
        raise BadEvaluator(f"evaluator file {path} does not exist")
    sys.path.insert(0, os.path.dirname(path))  # lets the evaluator import its sibling modules
    code, module = PRECOMPILED[1:] if PRECOMPILED is not None and PRECOMPILED[0] == path else (None, blank_module(path))
    sys.modules[module.__name__] = module
    try:
        if code is not None:
            exec(code, module.__dict__)  # as exec_module does with the code it compiles
        else:
            module.__spec__.loader.exec_module(module)
    except Exception as exc:
        raise BadEvaluator(f"importing evaluator file {path} failed: {type(exc).__name__}: {exc}") from exc
    staged = getattr(module, f"evaluate_{stage}", None) if stage else None
    if callable(staged):
        return staged
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        raise BadEvaluator(f"evaluator file {path} defines no callable evaluate(program_path)")
    return evaluate


def wants_ctx(evaluate: Callable[..., Any]) -> bool:
    """True when `evaluate` takes a second positional parameter (the ctx dict)."""
    code = getattr(evaluate, "__code__", None)
    if type(evaluate).__name__ == "function" and code is not None and not hasattr(evaluate, "__wrapped__") \
            and not hasattr(evaluate, "__signature__"):  # a plain function: its code says it (inspect costs 6 ms)
        return code.co_argcount >= 2 or bool(code.co_flags & VARARGS)
    import inspect

    try:
        params = inspect.signature(evaluate).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _jsonable(value: Any) -> Any:
    """`default` hook for json.dump: numpy-style scalars and arrays become plain numbers and lists."""
    for attr in ("item", "tolist"):
        method = getattr(value, attr, None)
        if callable(method):
            try:
                return method()
            except (TypeError, ValueError):
                continue
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serializable")


def reported_value(result: Any, layout: str) -> Any:
    """What evaluate() returned, as reported: an object with a `metrics` dict (OpenEvolve's EvaluationResult) gives
    that dict; in the OpenEvolve layout a dict without `combined_score` gets one, OpenEvolve's fitness: the mean of
    its numeric entries."""
    metrics = getattr(result, "metrics", None)
    if not isinstance(result, dict) and isinstance(metrics, dict):
        result = metrics
    if layout == "openevolve" and isinstance(result, dict) and "combined_score" not in result:
        numbers = [v for v in result.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers:
            result = {**result, "combined_score": sum(numbers) / len(numbers)}
    return result


def _report(payload: Any) -> None:
    sandbox.report(payload, default=_jsonable)


def _error(exc: BaseException, error_class: str, message: str | None = None) -> dict[str, Any]:
    import traceback

    tb = "".join(traceback.format_exception(exc))
    return {ERROR_KEY: {"type": type(exc).__name__, "message": message or str(exc), "traceback": tb,
                        "error_class": error_class}}


def _stage_args() -> dict[str, Any]:
    """The current stage's `args` from task.yaml (JSON in EVOFORGE_STAGE_ARGS; empty outside a cascade)."""
    try:
        args = json.loads(os.environ.get("EVOFORGE_STAGE_ARGS") or "{}")
    except ValueError:
        return {}
    return args if isinstance(args, dict) else {}


async def _completed(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _awaitable(value: Any) -> bool:
    """inspect.isawaitable without importing inspect unless the value may be one."""
    if not hasattr(value, "__await__") and type(value).__name__ != "generator":
        return False
    import inspect

    return inspect.isawaitable(value)


def _seed() -> int | None:
    """The repeat's seed from EVOFORGE_SEED (`evoforge eval --repeats`), or None when none was given."""
    value = os.environ.get("EVOFORGE_SEED", "")
    return int(value) if value.lstrip("-").isdigit() else None


def run(evaluator_path: str, program_path: str) -> int:
    """Call the evaluator on the program and report its result; returns the process exit code."""
    stage = os.environ.get("EVOFORGE_STAGE", "main")
    try:
        evaluate = load_evaluate(evaluator_path, stage)
    except BadEvaluator as exc:
        _report(_error(exc, "bad_evaluator"))
        return 1
    ctx = {"trial_dir": os.environ.get("EVOFORGE_TRIAL_DIR", os.getcwd()),
           "task_dir": os.environ.get("EVOFORGE_TASK_DIR", os.path.dirname(evaluator_path)),
           "stage": stage, "stage_args": _stage_args(), "seed": _seed()}
    try:
        result = evaluate(program_path, ctx) if wants_ctx(evaluate) else evaluate(program_path)
        if _awaitable(result):  # `async def evaluate`: run it to completion in a fresh event loop
            import asyncio

            result = asyncio.run(_completed(result))
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are crashes too
        _report(_error(exc, f"crash:{type(exc).__name__}"))
        return 1
    try:
        _report(reported_value(result, os.environ.get("EVOFORGE_LAYOUT", "evoforge")))
    except (TypeError, ValueError) as exc:
        _report(_error(exc, "bad_result", f"evaluate() returned a non-JSON result: {exc}"))
        return 1
    return 0


def main(argv: list[str]) -> None:
    if argv[:1] == [SUPERVISED]:
        from evoforge.experiment import supervisor

        split = argv.index("--") if "--" in argv else len(argv)
        opts, args = supervisor.parse_args([*argv[1:split], "--", *argv[split + 1 :]])
        sys.argv = [sys.argv[0], *args]  # what the evaluator would see without the supervisor's options
        supervisor.serve(opts, lambda: _evaluate(args), "the harness")
    _evaluate(argv)


def _evaluate(argv: list[str]) -> None:
    channel = os.environ.pop(sandbox.CHANNEL_VAR, "")
    os.environ.pop("EVOFORGE_RESULT", None)  # no result file: the candidate must not find a way to report
    if len(argv) != 2 or not channel.isdigit():
        sys.stderr.write("usage: EVOFORGE_CHANNEL_FD=N python -m evoforge.experiment.harness EVALUATOR PROGRAM\n")
        raise SystemExit(2)
    sandbox.attach(int(channel))
    evaluator_path, program_path = (os.path.realpath(a) for a in argv)
    sys.stdout.flush()
    code = run(evaluator_path, program_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the result is reported: stray non-daemon threads must not hold the trial to its timeout


if __name__ == "__main__":
    main(sys.argv[1:])

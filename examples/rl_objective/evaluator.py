"""Evaluator of the rl_objective task: builds the prompt/answer task from a secret seed, has the trusted driver
train policies with the candidate's loss in the candidate's jail, and scores the returned policies on held-out
prompts that only this process holds.

The stage's args (task.yaml) set `updates` and `seeds`; the `smoke` stage also checks the loss on a tiny batch.
A loss that cannot train (crash, non-scalar, no gradient, NaN) fails the stage with the driver's one-line reason;
one that imports anything but torch and math, or reaches files or other modules, is refused before it runs.
The score is the held-out success rate (greedy answer correct) averaged over the seeds; `success_se` is its
standard error. Standard library only: the evaluator's process never imports torch.
"""

from __future__ import annotations

import ast
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

from evoforge.sandbox import run_candidate

TASK_SEED = 20240205    # secret: the hidden rule (this file is hidden from the candidate)
HELDOUT_SEED = 917      # secret: the held-out prompts
FEATURES, TEACHER_HIDDEN, ACTIONS, POLICY_HIDDEN = 8, 16, 8, 32
TRAIN_PROMPTS, HELDOUT_PROMPTS = 4096, 1000
DRIVER = Path(__file__).resolve().parent / "driver.py"
DRIVER_TIMEOUT_S = 900.0  # the stage's own timeout_s ends it sooner
ALLOWED_IMPORTS = ("torch", "math")
FORBIDDEN_NAMES = frozenset({"open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr",
                             "setattr", "delattr", "breakpoint", "input", "memoryview"})
FORBIDDEN_ATTRS = frozenset({"os", "sys", "modules", "load", "save", "from_file", "hub", "serialization",
                             "subprocess", "builtins", "utils", "ops", "library", "jit", "compiler"})


class Rejected(Exception):
    """The candidate's loss could not train the policy; the message says why."""


def make_task() -> tuple[Any, list[list[float]], list[int], list[list[float]], list[int]]:
    """The hidden rule (a random tanh network; the answer is its arg-max), training and held-out prompts."""
    rng = random.Random(TASK_SEED)
    teacher = {"w1": [[rng.gauss(0, 1) for _ in range(FEATURES)] for _ in range(TEACHER_HIDDEN)],
               "b1": [rng.gauss(0, 0.5) for _ in range(TEACHER_HIDDEN)],
               "w2": [[rng.gauss(0, 1) for _ in range(TEACHER_HIDDEN)] for _ in range(ACTIONS)],
               "b2": [0.0] * ACTIONS}
    train_x = [[rng.gauss(0, 1) for _ in range(FEATURES)] for _ in range(TRAIN_PROMPTS)]
    held = random.Random(HELDOUT_SEED)
    held_x = [[held.gauss(0, 1) for _ in range(FEATURES)] for _ in range(HELDOUT_PROMPTS)]
    return teacher, train_x, [answer(teacher, x) for x in train_x], held_x, [answer(teacher, x) for x in held_x]


def logits(net: dict[str, Any], x: list[float]) -> list[float]:
    hidden = [math.tanh(sum(w * v for w, v in zip(row, x, strict=True)) + b)
              for row, b in zip(net["w1"], net["b1"], strict=True)]
    return [sum(w * h for w, h in zip(row, hidden, strict=True)) + b
            for row, b in zip(net["w2"], net["b2"], strict=True)]


def answer(net: dict[str, Any], x: list[float]) -> int:
    values = logits(net, x)
    return max(range(len(values)), key=values.__getitem__)


def check_loss_source(source: str) -> None:
    """A loss is a loss: it may import torch and math only and reach no file, module table or dunder attribute.

    The driver runs in the candidate's process, so a candidate that could reach the driver or the training file
    could skip the training it is judged on; this check closes the plain ways to do so (it is no proof).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise Rejected(f"the candidate does not parse: {exc.msg} (line {exc.lineno})") from exc
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            for module in modules:
                if module.split(".")[0] not in (*ALLOWED_IMPORTS, "__future__"):
                    raise Rejected(f"line {line} imports {module}: a loss may import only "
                                   f"{', '.join(ALLOWED_IMPORTS)}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            raise Rejected(f"line {line} uses {node.id}(): a loss reads no files and no other module")
        elif isinstance(node, ast.Attribute) and (node.attr in FORBIDDEN_ATTRS or node.attr.startswith("__")):
            raise Rejected(f"line {line} reaches .{node.attr}: a loss reads no files and no other module")


def check_params(params: Any) -> dict[str, Any]:
    """The policy's parameters must have the policy's shapes and be finite numbers."""
    shapes = {"w1": (POLICY_HIDDEN, FEATURES), "b1": (POLICY_HIDDEN,), "w2": (ACTIONS, POLICY_HIDDEN),
              "b2": (ACTIONS,)}
    if not isinstance(params, dict) or set(params) != set(shapes):
        raise Rejected(f"bad result: the driver's parameters must be a mapping of {sorted(shapes)}")
    for name, shape in shapes.items():
        rows = params[name] if len(shape) == 2 else [params[name]]
        ok = isinstance(rows, list) and len(rows) == (shape[0] if len(shape) == 2 else 1) and all(
            isinstance(r, list) and len(r) == shape[-1] and all(_finite(v) for v in r) for r in rows)
        if not ok:
            raise Rejected(f"bad result: parameter {name} is not a finite array of shape {shape}")
    return params


def success(params: dict[str, Any], prompts: list[list[float]], answers: list[int]) -> float:
    """Share of held-out prompts whose greedy answer is right."""
    return sum(answer(params, x) == a for x, a in zip(prompts, answers, strict=True)) / len(prompts)


def evaluate(program_path: str, ctx: dict[str, Any]) -> dict[str, Any]:
    args = ctx.get("stage_args") or {}
    stage = str(ctx.get("stage", "main"))
    smoke = stage == "smoke"
    updates, seeds = int(args.get("updates", 150)), int(args.get("seeds", 3))
    try:
        check_loss_source(Path(program_path).read_text(encoding="utf-8"))
    except Rejected as exc:
        raise Rejected(f"{stage}: {exc}") from None
    _, train_x, train_y, held_x, held_y = make_task()
    trial_dir = Path(ctx["trial_dir"])
    data_path, out_path = trial_dir / "train.json", trial_dir / f"policies.{stage}.json"
    shape = {"features": FEATURES, "hidden": POLICY_HIDDEN, "actions": ACTIONS}
    data_path.write_text(json.dumps({"shape": shape, "prompts": train_x, "answers": train_y}), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    argv = [str(Path(program_path).resolve()), str(data_path), str(out_path), "smoke" if smoke else "train",
            str(updates), str(seeds)]
    run = run_candidate(DRIVER, argv, timeout_s=DRIVER_TIMEOUT_S)
    if not run.ok:
        raise Rejected(f"{stage}: the training driver failed: {run.reason()}")
    try:
        result = json.loads(out_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Rejected(f"the training driver wrote no readable result ({type(exc).__name__})") from exc
    if not isinstance(result, dict) or result.get("ok") is not True:
        reason = result.get("reason") if isinstance(result, dict) else None
        raise Rejected(f"{stage}: {str(reason or 'the driver reported no parameters')[:500]}")
    policies = result.get("params")
    if not isinstance(policies, list) or len(policies) != seeds:
        raise Rejected(f"bad result: expected the parameters of {seeds} policies")
    rates = [success(check_params(p), held_x, held_y) for p in policies]
    mean = statistics.fmean(rates)
    se = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else 0.0
    metrics: dict[str, Any] = {"success": mean, "success_se": se, "updates": updates, "seeds": seeds}
    metrics.update({f"success_seed{i}": r for i, r in enumerate(rates)})
    return metrics


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

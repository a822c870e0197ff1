"""Benchmark of the Engineer's gates: the same synthetic training runs evaluated with gating off and on.

Each candidate is a few hyper-parameters; the task's evaluator (a command) runs a simulated training loop as a
subprocess that reports its loss through `evoforge.telemetry.report` for about 2 s and prints the final
validation loss (final quality follows the early curve, plus deterministic noise; some runs diverge or go NaN).
History accumulates as the loop would (completed trials' scores, curves and costs; the parent is the best so
far). Ends with `RESULT saved=<fraction of evaluation seconds saved> same_best=<bool> best_off=<x> best_on=<y>`
(same_best: gating on found the same best score as gating off).

The second task (`--task real`, needs torch) is the attention_mqar example's short stage with real training
curves: varied token-mixing layers (linear attention, softmax attention, a running mean) and learning rates,
each trained on MQAR in its own jail while its loss streams to the gates; the objective is held-out accuracy.
It ends with `RESULT saved_real=<fraction> same_best_real=<bool> best_off_real=<x> best_on_real=<y>`.

Run: `.venv/bin/python benchmarks/gating.py [--task synthetic|real|both] [--trials 30] [--seed 0] [--real-steps 1000]
[--real-warmup 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from evoforge.experiment import Engineer
from evoforge.models import Curve, EvaluationHistory, Outcome, TrialStatus
from evoforge.task.loader import Task, load_task

TRAIN = textwrap.dedent(
    """\
    import hashlib, json, math, random, runpy, sys, time
    from evoforge.telemetry import report

    STEPS, DT = 50, 0.04
    p = runpy.run_path(sys.argv[1])
    lr, width, warmup = float(p["LR"]), int(p["WIDTH"]), int(p["WARMUP"])
    rng = random.Random(int(hashlib.sha256(repr((lr, width, warmup)).encode()).hexdigest()[:8], 16))
    floor = 0.8 + 0.6 * (math.log10(lr) + 2.5) ** 2 + 0.1 * math.log2(width / 256) ** 2 - 0.02 * warmup
    floor += rng.gauss(0, 0.03)
    rate = 0.12 * (1 + 0.05 * math.tanh(math.log10(lr / 3e-3)))
    blowup = 8 + int(40 * (0.06 - lr)) if lr > 0.02 else None  # too high a learning rate diverges
    loss = 4.0
    for step in range(STEPS):
        loss = floor + (4.0 - floor) * math.exp(-rate * step) + rng.gauss(0, 0.02)
        if blowup is not None and step > blowup:
            loss *= 1.5 ** (step - blowup)
            if loss > 50:
                loss = float("nan")
        report(step=step, loss=loss)
        time.sleep(DT)
    print(json.dumps({"val_loss": loss + rng.gauss(0, 0.01)}))
    """
)

GATES_ON = """\
gates:
  median: {metric: loss, direction: minimize, warmup_steps: 3, min_trials: 3}
  parent_relative: {metric: loss, direction: minimize, warmup_steps: 3, margin: 0.1}
"""

GATES_OFF = """\
gates:
  anomaly: {nan: false}
"""


def write_task(root: Path, gating: bool) -> Task:
    root.mkdir(parents=True, exist_ok=True)
    (root / "problem.md").write_text("Pick LR, WIDTH and WARMUP for the lowest validation loss.\n")
    (root / "program.py").write_text("LR = 1e-3\nWIDTH = 256\nWARMUP = 0\n")
    (root / "train.py").write_text(TRAIN)
    (root / "task.yaml").write_text(
        f"name: gating-bench\nproblem: problem.md\nprogram: program.py\n"
        f"command: {sys.executable} {{task}}/train.py {{program}}\n"
        "objective: {metric: val_loss, direction: minimize}\ntimeout_s: 30\n" + (GATES_ON if gating else GATES_OFF)
    )
    return load_task(root)


def candidates(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    programs = []
    for _ in range(n):
        lr = 10 ** rng.uniform(-4.0, -1.2)
        programs.append(f"LR = {lr:.3g}\nWIDTH = {rng.choice([64, 128, 256, 512, 1024])}\n"
                        f"WARMUP = {rng.choice([0, 0, 2, 5])}\n")
    return programs


class LoopHistory:
    """What the loop would hand the Engineer: completed trials' scores, loss curves and costs; the best as parent."""

    def __init__(self, stage: str = "main", maximize: bool = False) -> None:
        self.stage, self.sign = stage, -1.0 if maximize else 1.0
        self.scores: list[float] = []
        self.curves: list[Curve] = []
        self.seconds: list[float] = []
        self.best: tuple[float, Curve] | None = None

    def snapshot(self) -> EvaluationHistory:
        stage = self.stage
        parent_curves = {stage: {"loss": self.best[1]}} if self.best else {}
        parent_scores = {stage: self.best[0]} if self.best else {}
        return EvaluationHistory(stage_scores={stage: list(self.scores)}, parent_stage_scores=parent_scores,
                                 curves={stage: {"loss": list(self.curves)}}, parent_curves=parent_curves,
                                 full_seconds=list(self.seconds))

    def add(self, outcome: Outcome) -> None:
        if outcome.status is not TrialStatus.SUCCEEDED or outcome.score is None:
            return
        curve = tuple((p.step or 0, p.value, p.t) for p in outcome.telemetry if p.name == "loss")
        self.scores.append(outcome.score)
        self.curves.append(curve)
        self.seconds.append(outcome.seconds)
        if self.best is None or self.sign * outcome.score < self.sign * self.best[0]:
            self.best = (outcome.score, curve)


async def evaluate_all(task: Task, programs: list[str], work: Path, stage: str = "main",
                       maximize: bool = False) -> list[Outcome]:
    engineer, history = Engineer(task), LoopHistory(stage, maximize)
    outcomes = []
    for i, code in enumerate(programs):
        outcome = await engineer.evaluate(code, work / f"trial{i}", history.snapshot())
        history.add(outcome)
        outcomes.append(outcome)
    return outcomes


def best_of(outcomes: list[Outcome], maximize: bool = False) -> tuple[int, float] | None:
    """(trial index, score) of the best succeeded trial; the earliest one among ties."""
    sign = -1.0 if maximize else 1.0
    scored = [(sign * o.score, i) for i, o in enumerate(outcomes)
              if o.status is TrialStatus.SUCCEEDED and o.score is not None]
    return (min(scored)[1], sign * min(scored)[0]) if scored else None


def show(label: str, outcomes: list[Outcome], wall: float) -> float:
    total = sum(o.seconds for o in outcomes)
    by_class: dict[str, int] = {}
    for o in outcomes:
        key = o.status.value if o.status is not TrialStatus.PRUNED else (o.error_class or "pruned")
        by_class[key] = by_class.get(key, 0) + 1
    saved = sum(o.seconds_saved for o in outcomes)
    print(f"{label}: {total:.1f} evaluation seconds ({wall:.1f}s wall), estimated saved {saved:.1f}s, {by_class}")
    return total


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attention_mqar"
REAL_ARGS = ("{steps: %d, report_every: 10, held_out: 200, batch: 16, d_model: 32, "
             "mqar: {vocab: 64, seq_len: 32, pairs: 4}}")
REAL_GATES_ON = """\
gates:
  median: {metric: loss, direction: minimize, warmup_steps: %(warmup)d, min_trials: 3, stages: [short]}
  parent_relative: {metric: loss, direction: minimize, warmup_steps: %(warmup)d, margin: 0.15, stages: [short]}
"""
SOFTMAX_LAYER = """\
import torch
from torch import nn

LEARNING_RATE = %s
WARMUP_STEPS = 10


class Mixer(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.heads, self.qkv, self.out = 4, nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, n, d))
"""
MEAN_LAYER = """\
import torch
from torch import nn

LEARNING_RATE = %s
WARMUP_STEPS = 10


class Mixer(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        counts = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return self.proj(x.cumsum(1) / counts)
"""


def write_real_task(root: Path, gating: bool, steps: int, warmup: int) -> Task:
    """The attention_mqar example with one short stage at small settings; gates on or off."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    text = (root / "task.yaml").read_text()
    text = text[:text.index("stages:")] + (
        f"stages:\n  - {{name: short, timeout_s: 600, args: {REAL_ARGS % steps}}}\n"
        + (REAL_GATES_ON % {"warmup": warmup} if gating else GATES_OFF) + "knowledge: {embeddings: false}\n")
    (root / "task.yaml").write_text(text)
    return load_task(root)


def real_candidates(seed: int, n: int) -> list[str]:
    """Linear attention (the seed), softmax attention and a running mean, at learning rates from 2e-4 to 5e-2."""
    rng = random.Random(seed)
    linear = (EXAMPLE / "initial_program.py").read_text().replace("WARMUP_STEPS = 100", "WARMUP_STEPS = 10")
    programs = []
    for _ in range(n):
        lr = f"{10 ** rng.uniform(-3.7, -1.3):.3g}"
        kind = rng.choice(["linear", "linear", "softmax", "mean"])
        if kind == "linear":
            programs.append(linear.replace("LEARNING_RATE = 0.001", f"LEARNING_RATE = {lr}"))
        else:
            programs.append((SOFTMAX_LAYER if kind == "softmax" else MEAN_LAYER) % lr)
    return programs


def compare(programs: list[str], make: Callable[[Path, bool], Task], stage: str, maximize: bool,
            suffix: str) -> None:
    """Evaluate `programs` with gating off and on; print the per-trial table and the RESULT line."""
    with tempfile.TemporaryDirectory(prefix="evoforge-gating-") as tmp:
        runs = {}
        for gating in (False, True):
            task = make(Path(tmp) / f"task-{gating}", gating)
            start = time.monotonic()
            outcomes = asyncio.run(evaluate_all(task, programs, Path(tmp) / f"runs-{gating}", stage, maximize))
            runs[gating] = (outcomes, time.monotonic() - start)
    off, on = runs[False][0], runs[True][0]
    for i, (a, b) in enumerate(zip(off, on, strict=True)):
        final = f"{a.score:.4f}" if a.score is not None else a.error_class
        print(f"  #{i:2d} off {a.status.value:9s} {final!s:12s} {a.seconds:5.2f}s | on {b.status.value:9s} "
              f"{b.seconds:5.2f}s {b.error_class or ''}")
    total_off, total_on = show("gating off", off, runs[False][1]), show("gating on ", on, runs[True][1])
    best_off, best_on = best_of(off, maximize), best_of(on, maximize)
    print(f"ratio on/off = {total_on / total_off:.3f}; best off = {best_off}, best on = {best_on} (trial, score)")
    # the best is unchanged when gating found the same best score (an equal score by another trial counts: several
    # runs can reach the same held-out accuracy, and which of them is first is an accident of the order)
    same = best_off is not None and best_on is not None and f"{best_off[1]:.6g}" == f"{best_on[1]:.6g}"
    x = f"{best_off[1]:.6g}" if best_off else "nan"
    y = f"{best_on[1]:.6g}" if best_on else "nan"
    print(f"RESULT saved{suffix}={1 - total_on / total_off:.3f} same_best{suffix}={str(same).lower()} "
          f"best_off{suffix}={x} best_on{suffix}={y}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["synthetic", "real", "both"], default="both")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-steps", type=int, default=1000, help="training steps of the real task's short stage")
    parser.add_argument("--real-warmup", type=int, default=200, help="steps before the real task's gates judge")
    args = parser.parse_args()
    if args.task in ("synthetic", "both"):
        compare(candidates(args.seed, args.trials), write_task, "main", False, "")
    if args.task in ("real", "both"):
        compare(real_candidates(args.seed, args.trials),
                lambda root, gating: write_real_task(root, gating, args.real_steps, args.real_warmup),
                "short", True, "_real")


if __name__ == "__main__":
    main()

"""Benchmark of the Engineer's gates: the same synthetic training runs evaluated with gating off and on.

Each candidate is a few hyper-parameters; the task's evaluator (a command) runs a simulated training loop as a
subprocess that reports its loss through `evoforge.telemetry.report` for about 2 s and prints the final
validation loss (final quality follows the early curve, plus deterministic noise; some runs diverge or go NaN).
History accumulates as the loop would (completed trials' scores, curves and costs; the parent is the best so
far). Ends with `RESULT saved=<fraction of evaluation seconds saved> same_best=<bool> best_off=<x> best_on=<y>`.

Run: `.venv/bin/python benchmarks/gating.py [--trials 30] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import textwrap
import time
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

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.curves: list[Curve] = []
        self.seconds: list[float] = []
        self.best: tuple[float, Curve] | None = None

    def snapshot(self) -> EvaluationHistory:
        parent_curves = {"main": {"loss": self.best[1]}} if self.best else {}
        parent_scores = {"main": self.best[0]} if self.best else {}
        return EvaluationHistory(stage_scores={"main": list(self.scores)}, parent_stage_scores=parent_scores,
                                 curves={"main": {"loss": list(self.curves)}}, parent_curves=parent_curves,
                                 full_seconds=list(self.seconds))

    def add(self, outcome: Outcome) -> None:
        if outcome.status is not TrialStatus.SUCCEEDED or outcome.score is None:
            return
        curve = tuple((p.step or 0, p.value, p.t) for p in outcome.telemetry if p.name == "loss")
        self.scores.append(outcome.score)
        self.curves.append(curve)
        self.seconds.append(outcome.seconds)
        if self.best is None or outcome.score < self.best[0]:
            self.best = (outcome.score, curve)


async def evaluate_all(task: Task, programs: list[str], work: Path) -> list[Outcome]:
    engineer, history = Engineer(task), LoopHistory()
    outcomes = []
    for i, code in enumerate(programs):
        outcome = await engineer.evaluate(code, work / f"trial{i}", history.snapshot())
        history.add(outcome)
        outcomes.append(outcome)
    return outcomes


def best_of(outcomes: list[Outcome]) -> tuple[int, float] | None:
    scored = [(o.score, i) for i, o in enumerate(outcomes) if o.status is TrialStatus.SUCCEEDED and o.score is not None]
    return (min(scored)[1], min(scored)[0]) if scored else None


def show(label: str, outcomes: list[Outcome], wall: float) -> float:
    total = sum(o.seconds for o in outcomes)
    by_class: dict[str, int] = {}
    for o in outcomes:
        key = o.status.value if o.status is not TrialStatus.PRUNED else (o.error_class or "pruned")
        by_class[key] = by_class.get(key, 0) + 1
    saved = sum(o.seconds_saved for o in outcomes)
    print(f"{label}: {total:.1f} evaluation seconds ({wall:.1f}s wall), estimated saved {saved:.1f}s, {by_class}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    programs = candidates(args.seed, args.trials)
    with tempfile.TemporaryDirectory(prefix="evoforge-gating-") as tmp:
        runs = {}
        for gating in (False, True):
            task = write_task(Path(tmp) / f"task-{gating}", gating)
            start = time.monotonic()
            outcomes = asyncio.run(evaluate_all(task, programs, Path(tmp) / f"runs-{gating}"))
            runs[gating] = (outcomes, time.monotonic() - start)
    off, on = runs[False][0], runs[True][0]
    for i, (a, b) in enumerate(zip(off, on, strict=True)):
        final = f"{a.score:.4f}" if a.score is not None else a.error_class
        print(f"  #{i:2d} off {a.status.value:9s} {final!s:12s} {a.seconds:5.2f}s | on {b.status.value:9s} "
              f"{b.seconds:5.2f}s {b.error_class or ''}")
    total_off, total_on = show("gating off", off, runs[False][1]), show("gating on ", on, runs[True][1])
    best_off, best_on = best_of(off), best_of(on)
    print(f"ratio on/off = {total_on / total_off:.3f}; best off = {best_off}, best on = {best_on} (trial, val_loss)")
    same = best_off is not None and best_on is not None and best_off == best_on
    x = f"{best_off[1]:.6g}" if best_off else "nan"
    y = f"{best_on[1]:.6g}" if best_on else "nan"
    print(f"RESULT saved={1 - total_on / total_off:.3f} same_best={str(same).lower()} best_off={x} best_on={y}")


if __name__ == "__main__":
    main()

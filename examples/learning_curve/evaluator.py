"""Evaluator of the learning_curve example: writes the training set into the trial folder, runs the candidate
(train.py) in a sandbox of its own (`evoforge.sandbox.run_candidate`) while its loss curve streams to evoforge,
then scores the weights it saved on a held-out validation set the candidate never sees.

The stage's `steps` and `report_every` (task.yaml) set how long the run trains and how often it reports: the
smoke stage is short, the full stage long. A validation loss below the noise floor is impossible without seeing
the validation data: task.yaml flags it as suspect.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from evoforge.sandbox import run_candidate

FEATURES = 12
TRAIN_SIZE = 512
VALID_SIZE = 512
NOISE = 0.3  # the floor: no model can beat NOISE**2 = 0.09 mean squared error on fresh data
DATA_SEED = 7
TRAIN_TIMEOUT_S = 600.0  # the stage's own timeout_s ends it sooner


def make_data(rng: random.Random, weights: list[float], n: int) -> tuple[list[list[float]], list[float]]:
    xs = [[rng.gauss(0.0, 1.0) for _ in weights] for _ in range(n)]
    ys = [sum(w * x for w, x in zip(weights, row, strict=True)) + rng.gauss(0.0, NOISE) for row in xs]
    return xs, ys


def evaluate(program_path: str, ctx: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(DATA_SEED)
    true_w = [rng.uniform(-1.0, 1.0) for _ in range(FEATURES)]
    train_x, train_y = make_data(rng, true_w, TRAIN_SIZE)
    valid_x, valid_y = make_data(rng, true_w, VALID_SIZE)
    trial_dir = Path(ctx["trial_dir"])
    data_path = trial_dir / "train.json"
    weights_path = trial_dir / f"weights.{ctx['stage']}.json"
    data_path.write_text(json.dumps({"x": train_x, "y": train_y, "seed": DATA_SEED}))
    steps, every = int(ctx["stage_args"].get("steps", 5000)), int(ctx["stage_args"].get("report_every", 10))
    run = run_candidate(program_path, [str(data_path), str(steps), str(every), str(weights_path)],
                        timeout_s=TRAIN_TIMEOUT_S)
    if not run.ok:
        raise RuntimeError(f"train.py failed ({run.error_class}): {run.stderr.strip()[-500:]}")
    weights = json.loads(weights_path.read_text())
    if len(weights) != FEATURES or any(w is None for w in weights):
        return {"val_loss": math.inf, "diverged": True}
    errors = [sum(w * x for w, x in zip(weights, row, strict=True)) - y
              for row, y in zip(valid_x, valid_y, strict=True)]
    return {"val_loss": sum(e * e for e in errors) / len(errors), "steps": steps}

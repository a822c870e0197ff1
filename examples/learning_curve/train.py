"""A small training run: linear regression fitted by minibatch SGD with momentum and weight decay.

Run by the evaluator as `python train.py DATA STEPS EVERY WEIGHTS`: it reads the training set from DATA (JSON),
trains for STEPS steps, streams its smoothed training loss every EVERY steps to evoforge through
`evoforge.telemetry.report` (a no-op outside evoforge) and writes the learned weights to WEIGHTS. Too large a
learning rate for the momentum diverges: the loss grows without bound, possibly to inf, and evoforge stops it.
"""

from __future__ import annotations

import json
import math
import random
import sys

from evoforge.telemetry import report

LEARNING_RATE = 0.25
MOMENTUM = 0.7
BATCH_SIZE = 16
WEIGHT_DECAY = 0.0001


def minibatch_step(w: list[float], v: list[float], xs: list[list[float]], ys: list[float], lr: float) -> float:
    """One SGD-with-momentum step on a minibatch; returns the minibatch's mean squared error before the step."""
    grad = [WEIGHT_DECAY * wi for wi in w]
    loss = 0.0
    for x, y in zip(xs, ys, strict=True):
        err = sum(wi * xi for wi, xi in zip(w, x, strict=True)) - y
        loss += err * err
        for i, xi in enumerate(x):
            grad[i] += 2 * err * xi / len(xs)
    for i in range(len(w)):
        v[i] = MOMENTUM * v[i] - lr * grad[i]
        w[i] += v[i]
    return loss / len(xs)


def train(xs: list[list[float]], ys: list[float], steps: int, every: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    w = [0.0] * len(xs[0])
    v = [0.0] * len(w)
    running = None
    for step in range(steps):
        batch = rng.sample(range(len(xs)), BATCH_SIZE)
        try:
            loss = minibatch_step(w, v, [xs[i] for i in batch], [ys[i] for i in batch], LEARNING_RATE)
        except OverflowError:
            loss = math.inf
        running = loss if running is None or not math.isfinite(loss) else 0.8 * running + 0.2 * loss
        if step % every == 0 or not math.isfinite(running):
            report(step=step, loss=running)
        if not math.isfinite(running):
            break
    return w


def main() -> None:
    data_path, steps, every, weights_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(data_path) as fh:
        data = json.load(fh)
    w = train(data["x"], data["y"], steps, every, data["seed"])
    with open(weights_path, "w") as fh:
        json.dump([wi if math.isfinite(wi) else None for wi in w], fh)


if __name__ == "__main__":
    main()

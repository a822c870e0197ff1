"""Run the full stage's training and held-out evaluation directly (no evoforge, no sandbox) on a device.

`python device_check.py --device cpu|cuda [--program initial_program.py] [--mixer softmax] [--steps N]`
prints `RESULT device=… seconds=… accuracy=…`. Needs only torch, numpy and this folder. The held-out set here
comes from a public seed (this is a timing and sanity check, not the evaluator).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mqar  # noqa: E402
import settings  # noqa: E402
import tinylm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--program", default=str(HERE / "initial_program.py"))
    parser.add_argument("--mixer", choices=["program", "softmax"], default="program")
    parser.add_argument("--steps", type=int, default=settings.FULL_STEPS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("candidate", args.program)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    make = (lambda d: tinylm.SoftmaxAttention(d)) if args.mixer == "softmax" else module.Mixer
    cfg = mqar.MQARConfig(**settings.MQAR)
    tc = tinylm.TrainConfig(steps=args.steps, batch=settings.BATCH, d_model=settings.D_MODEL,
                          lr=float(getattr(module, "LEARNING_RATE", 1e-3)),
                          weight_decay=float(getattr(module, "WEIGHT_DECAY", 0.1)),
                          warmup=int(getattr(module, "WARMUP_STEPS", 100)), seed=settings.TRAIN_SEED,
                          report_every=max(args.steps // 10, 1))
    torch.manual_seed(tc.seed)
    start = time.perf_counter()
    model = tinylm.TinyLM(cfg.vocab, cfg.seq_len, tc.d_model, make).to(args.device)
    curve = tinylm.train(model, cfg, tc, device=args.device)
    tokens, targets = mqar.make_batch(cfg, settings.HELD_OUT, seed=987_654)
    acc = mqar.accuracy(tinylm.predict(model, tokens, device=args.device), targets)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    for step, loss, train_acc in curve:
        print(f"step {step:5d} loss {loss:.3f} train_accuracy {train_acc:.3f}")
    print(f"RESULT device={args.device} mixer={args.mixer} steps={args.steps} seconds={seconds:.1f} accuracy={acc:.4f}")


if __name__ == "__main__":
    main()

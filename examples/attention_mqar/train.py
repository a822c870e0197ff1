"""Trusted driver that runs INSIDE the candidate's jail: `python train.py PROGRAM REQUEST_FILE`.

It imports the candidate's `Mixer`, builds the tiny 2-layer model around it and prints one JSON line with the
parts of the evaluator's request, in this order: `probe` (the mixer's outputs on inputs the evaluator chose, for
its causality check; gradients through the model; seconds per token of a forward pass at two lengths, for the
cost check) and `train` (train on MQAR batches from a public seed, streaming loss/accuracy telemetry, then predict
the tokens of the held-out inputs the evaluator wrote; the evaluator alone holds their targets and scores them).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mqar  # noqa: E402
import tinylm  # noqa: E402

from evoforge.telemetry import report  # noqa: E402


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("candidate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "Mixer", None), type):
        raise TypeError("the program defines no class Mixer(d_model) (an nn.Module)")
    return module


def probe(module: ModuleType, req: dict[str, Any]) -> dict[str, Any]:
    """The mixer's outputs on the evaluator's inputs, and its forward seconds per token at two lengths."""
    d = int(req["d_model"])
    torch.manual_seed(0)
    mixer = module.Mixer(d)
    x = torch.tensor(req["inputs"], dtype=torch.float32)
    with torch.no_grad():
        y = mixer(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"Mixer.forward returned {type(y).__name__}, not a tensor")
    model = tinylm.TinyLM(64, max(req["lengths"]), d, module.Mixer)
    batch = model(torch.zeros(2, 8, dtype=torch.long)).sum()
    batch.backward()  # gradients must flow through the layer
    costs = []
    for length in req["lengths"]:
        n = max(int(req["tokens"]) // length, 1)
        z = torch.randn(n, length, d)
        times = []
        with torch.no_grad():
            mixer(z)  # warm-up
            for _ in range(int(req["repeats"])):
                start = time.perf_counter()
                mixer(z)
                times.append(time.perf_counter() - start)
        costs.append(min(times) / (n * length))
    return {"outputs": y.tolist(), "shape": list(y.shape), "seconds_per_token": costs}


def train(module: ModuleType, req: dict[str, Any]) -> dict[str, Any]:
    """Train on MQAR, stream telemetry, and predict the held-out inputs read from req["inputs_path"]."""
    cfg = mqar.MQARConfig(**req["mqar"])
    tc = tinylm.TrainConfig(steps=int(req["steps"]), batch=int(req["batch"]), d_model=int(req["d_model"]),
                          lr=float(getattr(module, "LEARNING_RATE", 1e-3)),
                          weight_decay=float(getattr(module, "WEIGHT_DECAY", 0.1)),
                          warmup=int(getattr(module, "WARMUP_STEPS", 100)), seed=int(req["seed"]),
                          report_every=int(req["report_every"]))
    torch.manual_seed(tc.seed)
    model = tinylm.TinyLM(cfg.vocab, cfg.seq_len, tc.d_model, module.Mixer)
    start = time.perf_counter()
    curve = tinylm.train(model, cfg, tc, report=report)
    tokens = np.load(req["inputs_path"])
    predictions = tinylm.predict(model, tokens)
    final_loss = curve[-1][1] if curve else float("nan")
    return {"predictions": predictions.tolist(), "train_seconds": time.perf_counter() - start,
            "final_loss": final_loss}


def main() -> None:
    torch.set_num_threads(1)
    program, request = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    module = load(program)
    answer: dict[str, Any] = {}
    if request.get("probe"):
        answer["probe"] = probe(module, request["probe"])
    if request.get("train") is not None:
        answer["train"] = train(module, request["train"])
    sys.stdout.flush()
    print("\n" + json.dumps(answer, allow_nan=True), flush=True)


if __name__ == "__main__":
    main()

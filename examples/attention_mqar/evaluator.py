"""Evaluator of the attention_mqar example: runs the trusted driver train.py on the candidate's Mixer in the
candidate's own jail (`evoforge.sandbox.run_candidate`) and scores what comes back.

smoke: shapes, causality by perturbation (the evaluator changes the inputs after position t and compares the
outputs up to t itself), gradients flow, and cost growth between two sequence lengths (a layer whose cost per
token grows with the length is rejected when the stage says `subquadratic: true`); then a few training steps.
short / full: train for the stage's `steps` (loss and accuracy stream as telemetry from the candidate's process),
then the candidate's process predicts held-out sequences whose targets only this evaluator holds (drawn from
HELD_OUT_SEED, in this file, which the candidate's jail cannot read). A rejected candidate raises `Rejected`
with one line saying why.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from evoforge.sandbox import run_candidate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mqar  # noqa: E402
import settings  # noqa: E402

HELD_OUT_SEED = 20_261_129  # private: the held-out targets are regenerated here only
CAUSAL_TOL = 1e-4
PROBE_LEN, PROBE_BATCH = 16, 2


class Rejected(Exception):
    """The candidate failed a check; the message is the one-line reason."""


def evaluate(program_path: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """One stage: a single jailed driver run (probe when checking, then training and predictions); the metrics."""
    args = dict(ctx.get("stage_args") or {})
    trial_dir = Path(ctx.get("trial_dir") or ".")
    stage = str(ctx.get("stage") or "full")
    checking = bool(args.get("check", stage == "smoke"))
    probe = probe_request(args) if checking else None
    steps = int(args.get("steps", settings.FULL_STEPS))
    cfg = mqar.MQARConfig(**{**settings.MQAR, **args.get("mqar", {})})
    tokens, targets = mqar.make_batch(cfg, int(args.get("held_out", settings.HELD_OUT)), HELD_OUT_SEED)
    inputs_path = trial_dir / f"heldout.{stage}.npy"  # steps 0: the untrained model's predictions
    np.save(inputs_path, tokens)
    train = {"mqar": cfg.__dict__, "steps": steps, "batch": int(args.get("batch", settings.BATCH)),
             "d_model": int(args.get("d_model", settings.D_MODEL)), "seed": settings.TRAIN_SEED,
             "report_every": int(args.get("report_every", 25)), "inputs_path": str(inputs_path.resolve())}
    request_path = trial_dir / f"request.{stage}.json"  # a file: the probe is too large for a command line
    request_path.write_text(json.dumps({"probe": probe and probe[0], "train": train}))
    answer = _ask(program_path, request_path, bool(probe), float(args.get("train_timeout_s", 3600)))
    metrics: dict[str, Any] = {"steps": steps}
    if probe is not None:
        metrics.update(check(answer.get("probe"), probe, args))
    metrics.update(score(answer.get("train"), targets))
    return metrics


def _ask(program_path: str, request_path: Path, smoke: bool, timeout_s: float) -> dict[str, Any]:
    """Run train.py on the program in the candidate's jail; its JSON answer, or Rejected with the reason."""
    run = run_candidate(HERE / "train.py", [str(Path(program_path).resolve()), str(request_path.resolve())],
                        timeout_s=timeout_s, json_value=True)
    what = "smoke" if smoke else "training"
    if not run.ok:
        raise Rejected(f"{what} run failed: {run.reason()}")
    if not isinstance(run.value, dict):
        raise Rejected(f"{what} run failed: the driver printed no answer")
    return run.value


def probe_request(args: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray, np.ndarray, list[int]]:
    """The probe the driver answers: random inputs with copies changed after cut positions, in shuffled order,
    and the two lengths at which to time the layer. Returns (request, inputs, order, cuts)."""
    d = int(args.get("d_model", settings.D_MODEL))
    rng = np.random.default_rng(int(args.get("probe_seed", 0)))
    base = rng.standard_normal((PROBE_BATCH, PROBE_LEN, d)).astype(np.float32)
    cuts = [1, PROBE_LEN // 2, PROBE_LEN - 2]
    inputs = [base[i] for i in range(PROBE_BATCH)]
    for i in range(PROBE_BATCH):
        for t in cuts:
            changed = base[i].copy()
            changed[t + 1:] = rng.standard_normal(changed[t + 1:].shape)
            inputs.append(changed)
    order = rng.permutation(len(inputs))  # the perturbed copies are not where the candidate could expect them
    x = np.stack([inputs[j] for j in order])
    lengths = [int(v) for v in args.get("lengths", [128, 1024])]
    request = {"d_model": d, "inputs": x.tolist(), "lengths": lengths,
               "tokens": int(args.get("cost_tokens", 8192)), "repeats": int(args.get("cost_repeats", 3))}
    return request, x, order, cuts


def check(answer: Any, probe: tuple[dict[str, Any], np.ndarray, np.ndarray, list[int]],
          args: dict[str, Any]) -> dict[str, Any]:
    """Shapes, causality and cost growth of the Mixer from the driver's answer; raises Rejected on a failure."""
    request, x, order, cuts = probe
    lengths = request["lengths"]
    if not isinstance(answer, dict):
        raise Rejected("smoke run failed: the driver returned no probe")
    try:
        y = np.asarray(answer.get("outputs"), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise Rejected(f"shape: Mixer output is not a numeric tensor ({exc})") from exc
    if y.shape != x.shape:
        raise Rejected(f"shape: Mixer maps {list(x.shape)} to {list(y.shape)}; it must keep the shape")
    if not np.isfinite(y).all():
        raise Rejected("finite: Mixer output has NaN or infinite values on normal inputs")
    back = np.empty_like(y)
    back[order] = y
    worst = 0.0
    for i in range(PROBE_BATCH):
        for c, t in enumerate(cuts):
            copy = back[PROBE_BATCH + i * len(cuts) + c]
            diff = float(np.abs(copy[:t + 1] - back[i][:t + 1]).max())
            scale = float(np.abs(back[i][:t + 1]).max()) + 1e-6
            worst = max(worst, diff / scale)
            if diff > CAUSAL_TOL * scale:
                raise Rejected(f"causality: changing the inputs after position {t} changed the output at "
                               f"positions <= {t} (by {diff:.3g}); the layer sees the future")
    costs = answer.get("seconds_per_token")
    if not isinstance(costs, list) or len(costs) != 2 or not all(isinstance(c, int | float) and c > 0 for c in costs):
        raise Rejected("cost: the driver returned no timings")
    growth = costs[1] / costs[0]
    limit = float(args.get("max_cost_growth", 3.0))
    if args.get("subquadratic", True) and growth > limit:
        raise Rejected(f"cost: the time per token grew {growth:.1f}x from length {lengths[0]} to {lengths[1]} "
                       f"(limit {limit:g}x): the layer is not sub-quadratic")
    return {"cost_growth": growth, "causal_error": worst}


def score(answer: Any, targets: np.ndarray) -> dict[str, Any]:
    """Accuracy of the candidate's predictions of the held-out sequences, against the targets held here."""
    if not isinstance(answer, dict):
        raise Rejected("training run failed: the driver returned no predictions")
    try:
        predictions = np.asarray(answer.get("predictions"), dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise Rejected(f"predictions: not a table of token ids ({exc})") from exc
    if predictions.shape != targets.shape:
        raise Rejected(f"predictions: expected shape {list(targets.shape)}, got {list(predictions.shape)}")
    loss = answer.get("final_loss")
    return {"accuracy": mqar.accuracy(predictions, targets),
            "train_loss": float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else None,
            "train_seconds": float(answer.get("train_seconds") or 0.0)}

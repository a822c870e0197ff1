"""Evaluator of the data_curation task: builds the corpus, runs the candidate's curate() in its own jail
(`evoforge.sandbox.run_candidate` on driver.py), checks the selections against the budget, then trains a tiny
byte-level language model on the kept text HERE and scores it on held-out text the candidate never sees.

The candidate only proposes indices, weights and spans of the documents it was given; it cannot add text, see the
held-out documents (the split and the junk come from corpus.py and DATA_SEED, both hidden from it) or touch the
training. Metrics: `val_bpb` (held-out bits per byte, the objective) and `probe_acc` (pick the true continuation
of a held-out passage among three corrupted ones). Telemetry: the training loss and, every `eval_every` steps,
the held-out bits per byte, both written by this process. A broken candidate raises `Rejected` with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from evoforge.sandbox import run_candidate
from evoforge.telemetry import report

HERE = Path(__file__).resolve().parent
DATA_SEED = 20240611
PROBE_SEED = 911
MAX_WEIGHT = 10.0
DEFAULTS: dict[str, Any] = {"n_clean": None, "budget": 200_000, "steps": 600, "probe_items": 300,
                            "eval_bytes": 60_000, "report_every": 10, "eval_every": 100, "curate_timeout_s": 120}


class Rejected(Exception):
    """The candidate's output cannot be trained on; the message says why."""


def _sibling(name: str) -> ModuleType:
    key = f"data_curation_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def evaluate(program_path: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = ctx or {}
    args = {**DEFAULTS, **(ctx.get("stage_args") or {})}
    corpus = _sibling("corpus").build(DATA_SEED, n_clean=args["n_clean"])
    trial_dir = Path(ctx.get("trial_dir") or Path.cwd())
    budget = int(args["budget"])
    selections = run_curate(program_path, corpus.docs, budget, trial_dir / f"corpus.{ctx.get('stage', 'main')}.json",
                            float(args["curate_timeout_s"]))
    texts, weights, kept_kinds = check(selections, corpus.docs, corpus.kinds, budget)
    metrics: dict[str, Any] = {"kept_docs": len(texts), "kept_bytes": sum(map(len, texts)), "budget": budget,
                               "kept_clean_share": _clean_share(texts, kept_kinds)}
    metrics.update(train_and_score(texts, weights, corpus.heldout, args))
    return metrics


def run_curate(program_path: str, docs: list[str], budget: int, corpus_path: Path, timeout_s: float) -> Any:
    """The candidate's selections, from curate(docs, budget) run in its own jail; Rejected when it fails."""
    corpus_path.write_text(json.dumps(docs), encoding="utf-8")
    try:
        run = run_candidate(HERE / "driver.py", [str(Path(program_path).resolve()), str(corpus_path), str(budget)],
                            timeout_s=timeout_s, json_value=True)
    finally:
        corpus_path.unlink(missing_ok=True)  # ~1 MB per stage: the trial folder keeps only what tells the story
    if run.timed_out:
        raise Rejected(f"curate() did not return within {timeout_s:g} s")
    if not run.ok:
        raise Rejected(f"curate() failed: {run.reason()}")
    if not isinstance(run.value, dict) or "selections" not in run.value:
        raise Rejected("curate() returned nothing the driver could print (see the candidate's output)")
    return run.value["selections"]


def check(selections: Any, docs: list[str], kinds: list[str], budget: int
          ) -> tuple[list[bytes], list[float], list[str]]:
    """The kept texts (UTF-8), their weights and kinds; Rejected naming the first bad selection or the overrun."""
    if not isinstance(selections, list) or not selections:
        raise Rejected("curate() kept nothing: it must return a non-empty list of selections")
    texts, weights, kept_kinds, seen, used = [], [], [], set(), 0
    for n, item in enumerate(selections):
        if isinstance(item, int) and not isinstance(item, bool):
            item = [item]
        if not isinstance(item, list) or len(item) not in (1, 2, 4) or not all(_number(v) for v in item):
            raise Rejected(f"selection {n}: expected index, [index, weight] or [index, weight, start, end], "
                           f"got {str(item)[:80]}")
        index = item[0]
        if not isinstance(index, int) or not 0 <= index < len(docs):
            raise Rejected(f"selection {n}: index {index!r} is not an integer in 0..{len(docs) - 1}")
        if index in seen:
            raise Rejected(f"selection {n}: document {index} selected twice (use a weight instead)")
        seen.add(index)
        weight = float(item[1]) if len(item) > 1 else 1.0
        if not 0 < weight <= MAX_WEIGHT:
            raise Rejected(f"selection {n}: weight {weight!r} is not in (0, {MAX_WEIGHT:g}]")
        start, end = (item[2], item[3]) if len(item) == 4 else (0, len(docs[index]))
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(docs[index])):
            raise Rejected(f"selection {n}: span [{start!r}, {end!r}) is not inside document {index} "
                           f"(length {len(docs[index])})")
        text = docs[index][start:end].encode("utf-8")
        used += len(text)
        texts.append(text)
        weights.append(weight)
        kept_kinds.append(kinds[index])
    if used > budget:
        raise Rejected(f"over budget: the selections hold {used} bytes, the budget is {budget}")
    return texts, weights, kept_kinds


def train_and_score(texts: list[bytes], weights: list[float], heldout: list[str], args: dict[str, Any]
                    ) -> dict[str, float]:
    """Train the fixed model on `texts` (telemetry: loss, and val_bpb every eval_every steps), then score it."""
    lm = _sibling("lm")
    config = lm.TrainConfig(steps=int(args["steps"]))
    held = [h.encode("utf-8") for h in heldout]
    quick = held[:8]
    every, eval_every = int(args["report_every"]), int(args["eval_every"])
    running: list[float] = []

    def on_step(step: int, loss: float, model: Any) -> None:
        running.append(loss)
        if step % every == 0 or not math.isfinite(loss):
            report(step=step, loss=sum(running[-every:]) / len(running[-every:]))
        if eval_every and step % eval_every == eval_every - 1:
            report(step=step, val_bpb=lm.bits_per_byte(model, quick, max_bytes=8_000))

    model = lm.train(texts, weights, config, on_step)
    probe = lm.make_probe(heldout, int(args["probe_items"]), random.Random(PROBE_SEED))
    return {"val_bpb": lm.bits_per_byte(model, held, max_bytes=int(args["eval_bytes"])),
            "probe_acc": lm.probe_accuracy(model, probe), "train_loss": sum(running[-20:]) / max(len(running[-20:]), 1),
            "steps": config.steps}


def _clean_share(texts: list[bytes], kinds: list[str]) -> float:
    """Share of the kept bytes that come from documents made clean (not junk, not a near-duplicate)."""
    return sum(len(t) for t, k in zip(texts, kinds, strict=True) if k == "clean") / max(sum(map(len, texts)), 1)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

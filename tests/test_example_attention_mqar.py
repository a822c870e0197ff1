"""Tests of the attention_mqar example (small settings): the evaluator scores the seed, rejects a broken, a leaking
(non-causal) and a quadratic layer at the smoke stage with a clear reason, and a 3-trial offline run completes with
the candidate's telemetry recorded."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import load_module
from typer.testing import CliRunner

from evoforge.cli import app
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attention_mqar"
SMALL = {"mqar": {"vocab": 64, "seq_len": 32, "pairs": 4}, "d_model": 32, "batch": 8, "held_out": 32, "steps": 5}
SMOKE = {**SMALL, "check": True, "subquadratic": True}

QUADRATIC = """\
import torch
from torch import nn

LEARNING_RATE = 0.001


class Mixer(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.qkv = nn.Linear(d_model, 3 * d_model)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        n = x.shape[1]
        scores = (q @ k.transpose(1, 2)) / q.shape[-1] ** 0.5
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
"""
# the same layer without its causal mask: position t attends to every position, the future included
LEAKING = QUADRATIC.replace('scores.masked_fill(~mask, float("-inf")).softmax(-1)', "scores.softmax(-1)")
# a causal linear layer that peeks at the next token only: a subtle leak (one position ahead)
PEEKING = """\
import torch
from torch import nn


class Mixer(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        past = x.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        nxt = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], 1)
        return self.proj(past + 0.01 * nxt)
"""
BROKEN = """\
from torch import nn


class Mixer(nn.Module):
    def __init__(self, d_model):
        super().__init__()

    def forward(self, x):
        raise ValueError("not written yet")
"""
SHRINKING = QUADRATIC.replace('return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v',
                              "return v[:, :1]")


@pytest.fixture(scope="module")
def evaluator() -> ModuleType:
    return load_module(EXAMPLE / "evaluator.py", "attention_mqar_evaluator")


def write(tmp_path: Path, source: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return str(path)


def smoke(evaluator: ModuleType, program: str, tmp_path: Path, **args: Any) -> dict[str, Any]:
    return evaluator.evaluate(program, {"stage": "smoke", "trial_dir": str(tmp_path), "stage_args": {**SMOKE, **args}})


def test_evaluator_scores_the_seed(evaluator: ModuleType, tmp_path: Path) -> None:
    # at the real width (d_model 64) the probe is larger than a command-line argument may be: it goes in a file
    result = smoke(evaluator, str(EXAMPLE / "initial_program.py"), tmp_path, steps=20, d_model=64)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["steps"] == 20
    assert result["causal_error"] == 0.0
    assert result["cost_growth"] < 3.0
    assert result["train_loss"] is not None and result["train_loss"] > 0


def test_broken_candidate_is_rejected_at_smoke_with_its_error(evaluator: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(evaluator.Rejected, match=r"^smoke run failed: exit:1: ValueError: not written yet$"):
        smoke(evaluator, write(tmp_path, BROKEN), tmp_path)
    with pytest.raises(evaluator.Rejected, match="defines no class Mixer"):
        smoke(evaluator, write(tmp_path, "import torch\nLEARNING_RATE = 0.01\n"), tmp_path)
    with pytest.raises(evaluator.Rejected, match=re.escape("shape: Mixer maps [8, 16, 32] to [8, 1, 32]")):
        smoke(evaluator, write(tmp_path, SHRINKING), tmp_path)


@pytest.mark.parametrize("source", [LEAKING, PEEKING], ids=["full-attention", "one-token-peek"])
def test_a_leaking_layer_is_caught(evaluator: ModuleType, tmp_path: Path, source: str) -> None:
    with pytest.raises(evaluator.Rejected, match=r"^causality: changing the inputs after position \d+ changed"):
        smoke(evaluator, write(tmp_path, source), tmp_path)


def test_a_quadratic_layer_is_caught_only_when_the_task_says_subquadratic(evaluator: ModuleType,
                                                                         tmp_path: Path) -> None:
    program = write(tmp_path, QUADRATIC)
    with pytest.raises(evaluator.Rejected, match=r"^cost: the time per token grew .* not sub-quadratic$"):
        smoke(evaluator, program, tmp_path, steps=0)
    allowed = smoke(evaluator, program, tmp_path, subquadratic=False, steps=0)
    assert allowed["cost_growth"] > 3.0  # measured, and quadratic; the task allowed it
    assert allowed["causal_error"] == 0.0


def test_offline_run_of_three_trials_completes_with_the_candidates_telemetry(tmp_path: Path) -> None:
    task = tmp_path / "task"
    shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    (task / "problem.md").write_text("Evolve the Mixer.\n", encoding="utf-8")
    small = "{vocab: 64, seq_len: 32, pairs: 4}, d_model: 32, batch: 8, held_out: 32"
    text = (task / "task.yaml").read_text(encoding="utf-8")
    text = text[:text.index("stages:")] + (
        "stages:\n"
        f"  - {{name: smoke, timeout_s: 300, args: {{check: true, steps: 0, lengths: [32, 256], cost_tokens: 2048, "
        f"mqar: {small}}}}}\n"
        f"  - {{name: short, timeout_s: 300, args: {{steps: 30, report_every: 5, mqar: {small}}}}}\n"
        "gates:\n  anomaly: {nan: true}\nknowledge: {embeddings: false}\n")
    (task / "task.yaml").write_text(text, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(task), "--run-dir", str(run_dir), "--llm", "offline",
                                      "--trials", "3", "--concurrency", "1"])
    assert result.exit_code == 0, result.output
    with Record.for_run_dir(run_dir) as record:
        trials = record.trials()
        assert len(trials) == 3
        seed = next(t for t in trials if t.id == min(t.id for t in trials))
        assert seed.status is TrialStatus.SUCCEEDED, (seed.error_class, seed.error_message)
        assert 0.0 <= seed.score <= 1.0
        losses = [p for p in record.telemetry(seed.id) if p.name == "loss"]
        stages = record.stage_results(seed.id)
    assert [s.name for s in stages] == ["smoke", "short"]
    assert stages[0].metrics["cost_growth"] < 3.0 and stages[0].metrics["causal_error"] == 0.0
    assert len(losses) >= 6  # streamed from the candidate's jailed process through $EVOFORGE_TELEMETRY

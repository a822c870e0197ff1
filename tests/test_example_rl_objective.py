"""Tests of the rl_objective example: the evaluator scores the seed and GRPO from held-out answers only it holds,
a broken or cheating loss is rejected at the smoke stage with a clear reason, and a 3-trial offline run completes
with the reward curve streamed from the candidate's jail (small settings: the README gives the real ones)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

import evoforge
from evoforge.config import RunSettings
from evoforge.memory.record import Record

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rl_objective"
TINY_STAGES = """stages:
  - {name: smoke, timeout_s: 300, args: {updates: 2, seeds: 1}, promote: {min_score: 0.0}}
  - {name: full, timeout_s: 300, args: {updates: 4, seeds: 2}}
"""


@pytest.fixture(scope="module")
def evaluator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rl_objective_evaluator", EXAMPLE / "evaluator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ctx(tmp_path: Path, stage: str, updates: int, seeds: int) -> dict:
    return {"trial_dir": str(tmp_path), "task_dir": str(EXAMPLE), "stage": stage,
            "stage_args": {"updates": updates, "seeds": seeds}}


def test_seed_and_grpo_are_scored_on_held_out_answers(evaluator: ModuleType, tmp_path: Path) -> None:
    metrics = evaluator.evaluate(str(EXAMPLE / "initial_program.py"), ctx(tmp_path, "smoke", 8, 3))
    assert set(metrics) >= {"success", "success_se", "success_seed0", "success_seed1", "success_seed2"}
    rates = [metrics[f"success_seed{i}"] for i in range(3)]
    assert metrics["success"] == pytest.approx(sum(rates) / 3)
    assert 0.0 < metrics["success_se"] < 0.1
    _, _, _, _, held = evaluator.make_task()
    majority = max(held.count(a) for a in set(held)) / len(held)
    assert metrics["success"] > majority  # 8 updates already beat always giving the commonest answer
    grpo = evaluator.evaluate(str(EXAMPLE / "baselines" / "grpo.py"), ctx(tmp_path, "short", 8, 2))
    assert grpo["success"] > majority and grpo["seeds"] == 2


def test_held_out_prompts_and_rule_never_reach_the_candidate(evaluator: ModuleType, tmp_path: Path) -> None:
    evaluator.evaluate(str(EXAMPLE / "initial_program.py"), ctx(tmp_path, "smoke", 1, 1))
    written = json.loads((tmp_path / "train.json").read_text())
    _, train_x, train_y, held_x, _ = evaluator.make_task()
    assert set(written) == {"shape", "prompts", "answers"}  # no teacher, no seed, no held-out prompt
    assert written["prompts"] == train_x and written["answers"] == train_y
    assert not {tuple(x) for x in held_x} & {tuple(x) for x in written["prompts"]}


BROKEN = {
    "vector": ("def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n    return -rewards * logp\n",
               "returned a tensor of shape (8,), expected a scalar"),
    "float": ("def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n    return 0.0\n",
              "returned float, expected a scalar torch.Tensor"),
    "detached": ("def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n"
                 "    return (rewards * logp).mean().detach()\n", "no gradient: it must depend on logp"),
    "zero": ("def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n    return 0.0 * logp.sum()\n",
             "zero gradient on a batch with mixed rewards"),
    "nan": ("import math\n\ndef policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n"
            "    return logp.mean() * math.nan\n", "returned nan"),
    "raises": ("def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n    raise ValueError('no idea')\n",
               "policy_loss raised ValueError: no idea (smoke batch)"),
    "missing": ("from __future__ import annotations\n\nLOSS = 1\n", "defines no function policy_loss"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_loss_is_rejected_at_smoke_with_its_reason(evaluator: ModuleType, tmp_path: Path, kind: str) -> None:
    source, reason = BROKEN[kind]
    program = tmp_path / "candidate.py"
    program.write_text(source)
    with pytest.raises(evaluator.Rejected, match="^smoke: .*" + re.escape(reason)):
        evaluator.evaluate(str(program), ctx(tmp_path, "smoke", 2, 1))
    assert not (tmp_path / "policies.smoke.json").read_text().startswith('{"ok": true')


CHEATS = {
    "reads the training answers": ("def policy_loss(logp, *rest):\n    open('train.json').read()\n"
                                   "    return logp.mean()\n", "line 2 uses open()"),
    "imports sys": ("import sys\n\ndef policy_loss(logp, *rest):\n    return logp.mean()\n",
                    "line 1 imports sys: a loss may import only torch, math"),
    "reaches the driver": ("import torch\nDRIVER = torch.sys.modules\n\ndef policy_loss(logp, *rest):\n"
                           "    return logp.mean()\n", "line 2 reaches .modules"),
    "dunder escape": ("def policy_loss(logp, *rest):\n    logp.__class__.__base__\n    return logp.mean()\n",
                      "line 2 reaches .__base__"),
}


@pytest.mark.parametrize("kind", sorted(CHEATS))
def test_loss_that_reaches_files_or_modules_is_refused_before_it_runs(evaluator: ModuleType, tmp_path: Path,
                                                                        kind: str) -> None:
    source, reason = CHEATS[kind]
    program = tmp_path / "candidate.py"
    program.write_text(source)
    with pytest.raises(evaluator.Rejected, match="^smoke: " + re.escape(reason)):
        evaluator.evaluate(str(program), ctx(tmp_path, "smoke", 2, 1))
    assert not (tmp_path / "train.json").exists()  # refused before the driver ran


def test_three_trial_offline_run_completes_with_reward_telemetry(tmp_path: Path) -> None:
    task = tmp_path / "rl_objective"
    shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("__pycache__"))
    config = (task / "task.yaml").read_text()
    (task / "task.yaml").write_text(re.sub(r"stages:\n(  - .*\n)+", TINY_STAGES, config))
    summary = evoforge.run(task, run_dir=tmp_path / "run",
                           settings=RunSettings(trials=3, concurrency=1, prefetch=0, llm="offline", seed=0))
    assert sum(summary.counts.values()) == 3 and summary.counts.get("failed", 0) == 0, summary.counts
    assert summary.best is not None and 0.0 < summary.best.score <= 1.0
    with Record.for_run_dir(tmp_path / "run") as record:
        points = record.telemetry(1)
    rewards = [p for p in points if p.name == "reward"]
    assert [p.step for p in rewards if p.stage == "full"] == [0, 1, 2, 3]  # streamed from the candidate's jail
    assert all(0.0 <= p.value <= 1.0 for p in rewards)


BREAKS_IN_TRAINING = {
    "inf loss": ("loss * torch.inf", r"policy_loss returned inf \(update 0, seed 0\)"),
    "nan gradient": ("loss + (logp - logp.detach()).abs().sqrt().sum()",
                     r"policy_loss gave a non-finite gradient \(update 0, seed 0\)"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS_IN_TRAINING))
def test_loss_that_breaks_during_training_fails_with_update_and_seed(evaluator: ModuleType, tmp_path: Path,
                                                                     kind: str) -> None:
    broken, reason = BREAKS_IN_TRAINING[kind]
    program = tmp_path / "candidate.py"
    program.write_text("import torch\n\ndef policy_loss(logp, old_logp, ref_logp, rewards, group_ids):\n"
                       "    loss = -(rewards * logp).mean()\n"
                       f"    return {broken} if rewards.numel() > 8 else loss\n")  # fine on the smoke batch
    with pytest.raises(evaluator.Rejected, match="^short: " + reason):
        evaluator.evaluate(str(program), ctx(tmp_path, "short", 3, 2))

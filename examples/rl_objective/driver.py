"""Trusted training driver of the rl_objective task: trains a small softmax policy by group-sampled RL with the
candidate's `policy_loss`, and writes the trained policies' parameters (never a score) for the evaluator to judge.

Run by the evaluator through `evoforge.sandbox.run_candidate`, so it runs in the candidate's jail, as
`python driver.py CANDIDATE DATA OUT MODE UPDATES SEEDS`. DATA (written by the evaluator) holds the policy's shape
and the training prompts with their answers (the verifier of the reward); held-out prompts never reach this
process. MODE `smoke` first checks the loss on a tiny hand-made batch (a finite scalar with a useful gradient).
Each update samples GROUP_SIZE answers to each of PROMPTS_PER_UPDATE prompts, scores them (reward 1 for the right
answer, else 0) and takes INNER_STEPS optimiser steps on the candidate's loss; the mean reward per update is
streamed as telemetry (`reward`). OUT receives {"ok": true, "params": [...]} or {"ok": false, "reason": "..."}.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from evoforge.telemetry import report

LEARNING_RATE = 0.01
GROUP_SIZE = 8          # answers sampled per prompt (the group of GRPO)
PROMPTS_PER_UPDATE = 64
INNER_STEPS = 2         # optimiser steps per sampled batch: the ratio to the old policy moves off 1
MAX_GRAD_NORM = 1.0
LOSS_NAME = "policy_loss"

Loss = Callable[..., Any]


class BadLoss(Exception):
    """The candidate's loss cannot train the policy; the message is the reason the evaluator reports."""


class Policy(nn.Module):
    """Prompt features -> tanh hidden layer -> logits over the answers."""

    def __init__(self, features: int, hidden: int, actions: int) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(features, hidden), nn.Linear(hidden, actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))

    def params(self) -> dict[str, list[Any]]:
        return {"w1": self.hidden.weight.tolist(), "b1": self.hidden.bias.tolist(),
                "w2": self.out.weight.tolist(), "b2": self.out.bias.tolist()}


def load_loss(path: str) -> Loss:
    spec = importlib.util.spec_from_file_location("candidate", path)
    if spec is None or spec.loader is None:
        raise BadLoss(f"the candidate {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise BadLoss(f"importing the candidate failed: {type(exc).__name__}: {exc}") from exc
    return _loss_of(module)


def _loss_of(module: ModuleType) -> Loss:
    loss = getattr(module, LOSS_NAME, None)
    if not callable(loss):
        raise BadLoss(f"the candidate defines no function {LOSS_NAME}(logp, old_logp, ref_logp, rewards, group_ids)")
    return loss


def checked(loss: Loss, batch: tuple[torch.Tensor, ...], where: str) -> torch.Tensor:
    """Call the loss; it must return a finite scalar tensor that depends on `logp` (the first argument)."""
    try:
        value = loss(*batch)
    except Exception as exc:
        raise BadLoss(f"{LOSS_NAME} raised {type(exc).__name__}: {exc} ({where})") from exc
    if not isinstance(value, torch.Tensor):
        raise BadLoss(f"{LOSS_NAME} returned {type(value).__name__}, expected a scalar torch.Tensor ({where})")
    if value.numel() != 1:
        raise BadLoss(f"{LOSS_NAME} returned a tensor of shape {tuple(value.shape)}, expected a scalar ({where})")
    if not value.requires_grad:
        raise BadLoss(f"{LOSS_NAME} returned a tensor with no gradient: it must depend on logp ({where})")
    if not math.isfinite(float(value.detach())):
        raise BadLoss(f"{LOSS_NAME} returned {float(value.detach())} ({where})")
    return value.reshape(())


def smoke_check(loss: Loss) -> None:
    """Two groups of four answers with mixed rewards: the loss must give a finite, non-zero gradient on logp."""
    logp = torch.tensor([-0.5, -1.0, -2.0, -1.5, -0.3, -2.5, -1.2, -0.9], requires_grad=True)
    old_logp = torch.tensor([-0.6, -1.1, -1.8, -1.5, -0.4, -2.2, -1.0, -1.0])
    ref_logp = torch.tensor([-0.7, -0.9, -2.1, -1.4, -0.5, -2.0, -1.1, -1.2])
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    group_ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    value = checked(loss, (logp, old_logp, ref_logp, rewards, group_ids), "smoke batch")
    try:
        value.backward()
    except Exception as exc:
        raise BadLoss(f"backward through {LOSS_NAME} failed: {type(exc).__name__}: {exc} (smoke batch)") from exc
    grad = logp.grad
    if grad is None or not torch.isfinite(grad).all():
        raise BadLoss(f"{LOSS_NAME} gives a non-finite gradient on logp (smoke batch)")
    if float(grad.abs().max()) == 0.0:
        raise BadLoss(f"{LOSS_NAME} gives a zero gradient on a batch with mixed rewards: it cannot train (smoke batch)")


class Run:
    """One seed's training: the policy, its frozen reference (the initial policy), its optimiser and sampler."""

    def __init__(self, shape: dict[str, int], seed: int) -> None:
        torch.manual_seed(seed)
        self.policy = Policy(shape["features"], shape["hidden"], shape["actions"])
        self.reference = Policy(shape["features"], shape["hidden"], shape["actions"])
        self.reference.load_state_dict(self.policy.state_dict())
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=LEARNING_RATE)
        self.generator = torch.Generator().manual_seed(1000 + seed)

    def update(self, loss: Loss, x: torch.Tensor, answers: torch.Tensor, where: str) -> float:
        """Sample a group of answers per prompt, score them and take INNER_STEPS steps; returns the mean reward."""
        prompts = torch.randint(len(x), (PROMPTS_PER_UPDATE,), generator=self.generator)
        inputs = x[prompts].repeat_interleave(GROUP_SIZE, 0)
        group_ids = torch.arange(PROMPTS_PER_UPDATE).repeat_interleave(GROUP_SIZE)
        with torch.no_grad():
            old_all = torch.log_softmax(self.policy(inputs), -1)
            actions = torch.multinomial(old_all.exp(), 1, generator=self.generator).squeeze(1)
            old_logp = old_all.gather(1, actions[:, None]).squeeze(1)
            ref_logp = torch.log_softmax(self.reference(inputs), -1).gather(1, actions[:, None]).squeeze(1)
        rewards = (actions == answers[prompts].repeat_interleave(GROUP_SIZE)).float()
        for _ in range(INNER_STEPS):
            logp = torch.log_softmax(self.policy(inputs), -1).gather(1, actions[:, None]).squeeze(1)
            value = checked(loss, (logp, old_logp, ref_logp, rewards, group_ids), where)
            self.optimizer.zero_grad()
            value.backward()
            if not all(p.grad is None or torch.isfinite(p.grad).all() for p in self.policy.parameters()):
                raise BadLoss(f"{LOSS_NAME} gave a non-finite gradient ({where})")
            nn.utils.clip_grad_norm_(self.policy.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
        return float(rewards.mean())


def train(loss: Loss, data: dict[str, Any], updates: int, seeds: int) -> list[dict[str, list[Any]]]:
    """Train `seeds` policies in lockstep for `updates` updates; stream the mean reward per update."""
    torch.set_num_threads(1)
    x = torch.tensor(data["prompts"], dtype=torch.float32)
    answers = torch.tensor(data["answers"], dtype=torch.long)
    runs = [Run(data["shape"], seed) for seed in range(seeds)]
    for step in range(updates):
        rewards = [run.update(loss, x, answers, f"update {step}, seed {i}") for i, run in enumerate(runs)]
        report(step=step, reward=sum(rewards) / len(rewards))
    return [run.policy.params() for run in runs]


def main(argv: list[str]) -> None:
    candidate, data_path, out_path, mode, updates, seeds = argv[0], argv[1], argv[2], argv[3], int(argv[4]), \
        int(argv[5])
    with open(data_path, encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        loss = load_loss(candidate)
        if mode == "smoke":
            smoke_check(loss)
        result: dict[str, Any] = {"ok": True, "params": train(loss, data, updates, seeds)}
    except BadLoss as exc:
        result = {"ok": False, "reason": str(exc)[:500]}
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1:])

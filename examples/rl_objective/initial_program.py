"""The seed objective: REINFORCE with a leave-one-out group baseline (in the spirit of RLOO, Ahmadian et al. 2024,
arXiv:2402.14740) and a KL penalty to the reference policy. No ratio, no clipping, no reward normalisation.

policy_loss receives, per sampled answer (1-D tensors of equal length): logp (the current policy's log-probability,
with gradient), old_logp (the sampling policy's), ref_logp (the reference policy's), rewards (1.0 right, 0.0
wrong) and group_ids (which prompt the answer belongs to: answers to one prompt form a group). It returns a scalar
loss to minimise.
"""

import torch

BASELINE_WEIGHT = 1.0   # share of the leave-one-out mean reward subtracted from each reward
ADVANTAGE_SCALE = 1.0
KL_COEF = 0.5           # weight of the KL penalty to the reference policy (conservative: GRPO uses 0.04)
ENTROPY_BONUS = 0.0     # weight of a bonus for low log-probabilities of the sampled answers


def leave_one_out_mean(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    groups = int(group_ids.max()) + 1
    total = torch.zeros(groups).index_add_(0, group_ids, rewards)
    count = torch.zeros(groups).index_add_(0, group_ids, torch.ones_like(rewards))
    return (total[group_ids] - rewards) / (count[group_ids] - 1).clamp(min=1)


def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):
    advantages = ADVANTAGE_SCALE * (rewards - BASELINE_WEIGHT * leave_one_out_mean(rewards, group_ids))
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    return -(advantages * logp).mean() + KL_COEF * kl.mean() + ENTROPY_BONUS * logp.mean()

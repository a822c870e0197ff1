"""GRPO's objective (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models", arXiv:2402.03300, eq. 3 with outcome supervision), as a candidate of this task: the baseline to beat.

Each answer's advantage is its reward normalised within its group (minus the group mean, over the group's standard
deviation); the importance ratio to the sampling policy is clipped as in PPO; the policy is kept near the
reference with the unbiased, always-positive KL estimator pi_ref/pi - log(pi_ref/pi) - 1. Each answer here is a
single token, so the per-token mean of the paper is the answer's own term.
"""

import torch

CLIP_EPS = 0.2      # the paper's epsilon
KL_BETA = 0.04      # the paper's beta
STD_EPS = 1e-4      # keeps groups whose rewards are all equal at zero advantage


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """(r - mean of its group) / (std of its group + STD_EPS)."""
    groups = int(group_ids.max()) + 1
    count = torch.zeros(groups).index_add_(0, group_ids, torch.ones_like(rewards))
    mean = torch.zeros(groups).index_add_(0, group_ids, rewards) / count
    centred = rewards - mean[group_ids]
    var = torch.zeros(groups).index_add_(0, group_ids, centred**2) / (count - 1).clamp(min=1)
    return centred / (var.sqrt()[group_ids] + STD_EPS)


def policy_loss(logp, old_logp, ref_logp, rewards, group_ids):
    advantages = group_advantages(rewards, group_ids)
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - CLIP_EPS, 1 + CLIP_EPS) * advantages)
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    return -(surrogate - KL_BETA * kl).mean()

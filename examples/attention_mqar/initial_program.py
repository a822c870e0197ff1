"""Seed token-mixing layer: plain causal linear attention (Katharopoulos et al., 2020) with the elu+1 feature map.

The evaluator builds a 2-layer model around `Mixer(d_model)` and trains it on MQAR. `Mixer.forward` maps
(batch, length, d_model) to the same shape and must be causal: the output at position t may depend only on
positions <= t. Its cost must grow linearly with the length (no length x length matrix). The UPPER_CASE
constants below are read by the trainer (learning rate, weight decay, warm-up) or shape the layer.
"""

import torch
from torch import nn

LEARNING_RATE = 0.001
WEIGHT_DECAY = 0.1
WARMUP_STEPS = 100
NUM_HEADS = 4
FEATURE_EPS = 1e-6


class Mixer(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.heads = NUM_HEADS
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).unbind(2)  # (b, n, h, e)
        q, k = nn.functional.elu(q) + 1, nn.functional.elu(k) + 1
        kv = torch.einsum("bnhe,bnhf->bnhef", k, v).cumsum(1)  # running sum of k v^T up to each position
        num = torch.einsum("bnhe,bnhef->bnhf", q, kv)
        den = torch.einsum("bnhe,bnhe->bnh", q, k.cumsum(1)).unsqueeze(-1) + FEATURE_EPS
        return self.out((num / den).reshape(b, n, d))

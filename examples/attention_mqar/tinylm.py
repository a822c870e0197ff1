"""The tiny 2-layer model around the candidate's token-mixing layer, its training loop on MQAR batches and its
predictions; shared by the trusted driver (train.py) and device_check.py. Needs torch and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from mqar import IGNORE, MQARConfig, make_batch
from torch import nn


class ShortConv(nn.Module):
    """Causal depthwise convolution over the last `width` positions, added to its input (as in H3, Based and
    Mamba): it lets a token see its neighbours before the mixer, so the mixer can bind a value to its key."""

    def __init__(self, d_model: int, width: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, width, groups=d_model, padding=width - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


class Block(nn.Module):
    """Pre-norm residual block: a short convolution and the candidate's token mixer, then a position-wise MLP."""

    def __init__(self, d_model: int, mixer: nn.Module) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.shortconv, self.mixer = ShortConv(d_model), mixer
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.shortconv(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """Token and position embeddings, two blocks around `make_mixer(d_model)`, a tied output head."""

    def __init__(self, vocab: int, max_len: int, d_model: int, make_mixer: Callable[[int], nn.Module],
                 layers: int = 2) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, make_mixer(d_model)) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    d_model: int = 64
    seed: int = 0
    report_every: int = 0  # 0: no telemetry


def train(model: TinyLM, cfg: MQARConfig, tc: TrainConfig,
          report: Callable[..., None] | None = None, device: str = "cpu") -> list[tuple[int, float, float]]:
    """AdamW with linear warm-up and cosine decay on fresh batches; returns (step, loss, accuracy) points."""
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    warm = max(tc.warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 1.0) * 0.5 * (
        1 + math.cos(math.pi * min(s / max(tc.steps, 1), 1.0))))
    curve, ema_loss, ema_acc = [], None, None
    model.train()
    for step in range(tc.steps):
        x, y = (torch.from_numpy(a).to(device) for a in make_batch(cfg, tc.batch, seed=tc.seed * 1_000_003 + step))
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            mask = y != IGNORE
            acc = (logits.argmax(-1)[mask] == y[mask]).float().mean().item()
        value = loss.item()
        ema_loss = value if ema_loss is None or not math.isfinite(value) else 0.9 * ema_loss + 0.1 * value
        ema_acc = acc if ema_acc is None else 0.9 * ema_acc + 0.1 * acc
        last = step == tc.steps - 1
        if tc.report_every and (step % tc.report_every == 0 or last or not math.isfinite(value)):
            curve.append((step, ema_loss, ema_acc))
            if report is not None:
                report(step=step, loss=ema_loss, accuracy=ema_acc)
        if not math.isfinite(value):
            break
    return curve


@torch.no_grad()
def predict(model: TinyLM, tokens: np.ndarray, batch: int = 256, device: str = "cpu") -> np.ndarray:
    """The model's argmax token at every position of `tokens` (n, seq_len)."""
    model.eval()
    out = [model(torch.from_numpy(tokens[i:i + batch]).to(device)).argmax(-1).cpu().numpy()
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out)


class SoftmaxAttention(nn.Module):
    """Reference mixer: causal multi-head softmax attention (quadratic in the sequence length)."""

    def __init__(self, d_model: int, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, n, d))

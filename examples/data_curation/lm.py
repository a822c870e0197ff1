"""The data_curation evaluator's tiny language model: a byte-level GRU trained on the kept documents (PyTorch, CPU),
its held-out bits per byte, and the multiple-choice continuation probe. No candidate code ever runs here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

VOCAB = 256
SEPARATOR = b"\n\n"


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained: the same for every candidate (only the data differs)."""

    steps: int = 600
    batch: int = 32
    seq: int = 64
    hidden: int = 96
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1


class ByteConvLM(nn.Module):
    """Byte embeddings, gated causal dilated convolutions with residuals (it sees the last 31 bytes),
    and a linear head: parallel over positions, hence quick on a CPU."""

    def __init__(self, hidden: int, depth: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, 2 * hidden, kernel, dilation=2 ** i) for i in range(depth))
        self.pads = [(kernel - 1) * 2 ** i for i in range(depth)]
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2)
        for conv, pad in zip(self.convs, self.pads, strict=True):
            a, b = conv(nn.functional.pad(h, (pad, 0))).chunk(2, dim=1)
            h = h + torch.tanh(a) * torch.sigmoid(b)
        return self.head(self.norm(h.transpose(1, 2)))


class Sampler:
    """Training windows drawn from the kept texts: a text with probability weight x length, then a start in it
    (a window may run on into the next text, as in a packed pretraining stream)."""

    def __init__(self, texts: Sequence[bytes], weights: Sequence[float], seq: int, rng: random.Random) -> None:
        stream = SEPARATOR.join(texts) + SEPARATOR
        self.starts, self.lengths, pos = [], [], 0
        for text in texts:
            self.starts.append(pos)
            self.lengths.append(max(len(text), 1))
            pos += len(text) + len(SEPARATOR)
        self.stream = stream + stream[: seq + 1] * (1 + (seq + 1) // max(len(stream), 1))
        self.cum = _cumulative([w * n for w, n in zip(weights, self.lengths, strict=True)])
        self.seq, self.rng = seq, rng

    def batch(self, size: int) -> torch.Tensor:
        rows = []
        for _ in range(size):
            i = _pick(self.cum, self.rng.random() * self.cum[-1])
            start = self.starts[i] + self.rng.randrange(self.lengths[i])
            rows.append(list(self.stream[start:start + self.seq + 1]))
        return torch.tensor(rows, dtype=torch.long)


def train(texts: Sequence[bytes], weights: Sequence[float], config: TrainConfig,
          on_step: Callable[[int, float, ByteConvLM], None] | None = None) -> ByteConvLM:
    """Train a fresh model for `config.steps` steps on windows of `texts`; `on_step(step, loss, model)` each step."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = ByteConvLM(config.hidden)
    sampler = Sampler(texts, weights, config.seq, random.Random(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    warmup, total = max(1, config.steps // 10), max(config.steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    for step in range(config.steps):
        batch = sampler.batch(config.batch)
        logits = model(batch[:, :-1])
        loss = loss_fn(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step, loss.item(), model)
    return model


@torch.no_grad()
def bits_per_byte(model: ByteConvLM, texts: Sequence[bytes], seq: int = 256, max_bytes: int = 1 << 20) -> float:
    """Mean bits per byte the model needs for `texts` (each read from its start, in windows of `seq`)."""
    model.eval()
    total, count = 0.0, 0
    for text in texts:
        data = torch.tensor(list(text[:max_bytes]), dtype=torch.long)
        for start in range(0, len(data) - 1, seq):
            chunk = data[start:start + seq + 1]
            if len(chunk) < 2:
                continue
            logits = model(chunk[None, :-1])[0]
            total += float(nn.functional.cross_entropy(logits, chunk[1:], reduction="sum"))
            count += len(chunk) - 1
        max_bytes -= len(text)
        if max_bytes <= 0:
            break
    model.train()
    return total / max(count, 1) / math.log(2)


@dataclass(frozen=True)
class ProbeItem:
    prefix: bytes
    options: tuple[bytes, ...]
    answer: int


def make_probe(texts: Sequence[str], n_items: int, rng: random.Random, prefix_chars: int = 96,
               cont_words: int = 8) -> list[ProbeItem]:
    """Multiple-choice items from held-out `texts`: after a prefix, the true next words against three corrupted
    ones (the same words shuffled, a few letters swapped in each word, the words of another passage)."""
    items: list[ProbeItem] = []
    pool = [t for t in texts if len(t.split()) > 3 * cont_words]
    for _ in range(n_items * 20):
        if len(items) >= n_items or not pool:
            break
        text = rng.choice(pool)
        words = text.split(" ")
        cut = rng.randrange(cont_words, len(words) - cont_words)
        prefix = " ".join(words[:cut])[-prefix_chars:] + " "
        true = words[cut:cut + cont_words]
        shuffled = true[:]
        rng.shuffle(shuffled)
        swapped = [_swap(w, rng) for w in true]
        other_words = rng.choice(pool).split(" ")
        at = rng.randrange(0, len(other_words) - cont_words)
        other = other_words[at:at + cont_words]
        options = [" ".join(o) for o in (true, shuffled, swapped, other)]
        if len(set(options)) < 4:
            continue
        order = list(range(4))
        rng.shuffle(order)
        items.append(ProbeItem(prefix.encode(), tuple(options[i].encode() for i in order), order.index(0)))
    return items


def _swap(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word[::-1] if len(word) == 2 else word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


@torch.no_grad()
def probe_accuracy(model: ByteConvLM, items: Sequence[ProbeItem]) -> float:
    """Share of items where the model gives the true continuation the best mean log-probability per byte."""
    model.eval()
    right = 0
    for item in items:
        scores = []
        for option in item.options:
            data = torch.tensor(list(item.prefix + option), dtype=torch.long)
            logp = torch.log_softmax(model(data[None, :-1])[0], dim=-1)
            targets = data[1:]
            tail = slice(len(item.prefix) - 1, len(data) - 1)
            scores.append(float(logp[tail].gather(1, targets[tail, None]).mean()))
        right += int(max(range(len(scores)), key=scores.__getitem__) == item.answer)
    model.train()
    return right / max(len(items), 1)


def _cumulative(values: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out


def _pick(cum: Sequence[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo

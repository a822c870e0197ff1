"""MiniLM's forward pass as an ONNX graph run by ONNX Runtime on one thread, for a trial's one or two short texts.
Its 36 dense projections compute in int8: weights quantized once per output channel (symmetric, scale = the
column's largest |w| / 127), each input quantized as it comes (one scale for the text), so one 18-token text takes
~2.2-2.7 ms of CPU (~0.1 ms a token) instead of ~6.2 ms in float32 on this project's machines. Attention, layer
norms, GELU and pooling stay float32. Vectors agree with the float32 pass of embeddings.py to cosine ≥ 0.98 (mean
0.993 over the 94 texts of benchmarks/retrieval and tests/minilm_reference.json; 0.980 for the empty text), and the
labelled retrieval set ranks as well (benchmarks/cognition.py --retrieval). The graph is built in memory from the
weights already loaded; when `onnxruntime` or `onnx` is not installed, or cannot run it, `OnnxForward.build` returns
None and the numpy pass does the work.

The graph is written with ONNX Runtime's fused CPU kernels (domain com.microsoft) rather than left for its optimizer
to find: per layer one QAttention (the three int8 projections in one product, then attention), three
DynamicQuantizeMatMul and a Gelu, ~60 nodes in all instead of ~170 (each node costs the run a few µs). Its fusion of
Add + LayerNormalization into SkipLayerNormalization is turned off: that kernel took ~40 µs for an 18 × 384 input
where the two nodes take ~11 µs (ONNX Runtime 1.32), ~0.3 ms a text over 12 of them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HEADS, WIDTH = 12, 384
EPS = 1e-12
MS = "com.microsoft"  # ONNX Runtime's own operators, built into its CPU package
DISABLED_FUSIONS = ["SkipLayerNormFusion"]  # slower than the Add and LayerNormalization it replaces (see above)


class OnnxForward:
    """Mean-pooled, L2-normalised MiniLM vectors of texts' token ids, one text per run."""

    def __init__(self, session: Any, keep: list[Any], positions: int) -> None:
        self._session = session
        self._keep = keep  # the OrtValues the session reads the weights from (they must outlive it)
        self._positions = np.arange(positions, dtype=np.int64)

    @classmethod
    def build(cls, weights: Mapping[str, np.ndarray], layers: int, *,
              optimized_path: str | None = None) -> OnnxForward | None:
        """The session for `weights` (embeddings.py's dict: names as in model.safetensors, dense and attention
        matrices already transposed to (in, out)); None when ONNX Runtime or onnx is not installed, or cannot run
        the graph. `optimized_path`: where ONNX Runtime saves the graph it runs, after its own fusions (to see
        them)."""
        try:
            import onnxruntime as ort
            from onnx import TensorProto, helper
        except ImportError:
            return None
        graph = _Graph(helper, TensorProto)
        model = graph.minilm(weights, layers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a trial's few texts; threads would fight the evaluations for the cores
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if optimized_path is not None:
            options.optimized_model_filepath = optimized_path
        names = list(graph.external)
        values = [ort.OrtValue.ortvalue_from_numpy(graph.external[name]) for name in names]
        options.add_external_initializers(names, values)
        positions = len(weights["embeddings.position_embeddings.weight"])
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=DISABLED_FUSIONS)
            forward = cls(session, values, positions)
            forward([[101, 102]])  # one run now: a runtime without these kernels fails here, not in a trial
        except Exception as exc:  # noqa: BLE001 - an ONNX Runtime that cannot run the graph: numpy does
            log.warning("cognition base: ONNX Runtime cannot run the encoder (%s); encoding with numpy", exc)
            return None
        return forward

    def __call__(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One vector per text, each run alone and unpadded: an input's int8 scale covers its whole tensor, so a
        text batched with others (or with padding) would get a vector that depends on its neighbours."""
        out = np.empty((len(token_ids), WIDTH), dtype=np.float32)
        for row, ids in enumerate(token_ids):
            feeds = {"ids": np.array([ids], dtype=np.int64), "positions": self._positions[: len(ids)]}
            out[row] = self._session.run(None, feeds)[0][0]
        return out


class _Graph:
    """Builds the graph node by node; large tensors are declared external (`self.external`: name → array)."""

    def __init__(self, helper: Any, tensor_proto: Any) -> None:
        self.h, self.tp = helper, tensor_proto
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.external: dict[str, np.ndarray] = {}
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array)
        if array.size <= 16:  # shapes and scalars: inside the graph
            self.initializers.append(self.h.make_tensor(name, _dtype(self.tp, array), array.shape, array.ravel()))
            return name
        tensor = self.tp()
        tensor.name, tensor.data_type, tensor.data_location = name, _dtype(self.tp, array), self.tp.EXTERNAL
        tensor.dims.extend(array.shape)
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "evoforge-minilm"
        self.initializers.append(tensor)
        self.external[name] = array
        return name

    def op(self, kind: str, inputs: list[str], domain: str = "", outputs: int = 1, **attributes: Any) -> str:
        """Adds a node; returns its (first) output's name, the others being that name + "_1", "_2"…"""
        self._n += 1
        out = f"v{self._n}"
        names = [out, *(f"{out}_{i}" for i in range(1, outputs))]
        self.nodes.append(self.h.make_node(kind, inputs, names, domain=domain or None, **attributes))
        return out

    def minilm(self, w: Mapping[str, np.ndarray], layers: int) -> Any:
        h, tp = self.h, self.tp
        word = self.op("Gather", [self.const("word", w["embeddings.word_embeddings.weight"]), "ids"])
        # every token has type 0: its embedding is added to the position table once, here
        table = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        x = self._norm(self.op("Add", [word, self.op("Gather", [self.const("position", table), "positions"])]), w,
                       "embeddings.LayerNorm")
        for layer in range(layers):
            p = f"encoder.layer.{layer}."
            qkv = [f"{p}attention.self.{name}." for name in ("query", "key", "value")]
            weight, scale = self._quantized(p + "qkv", np.concatenate([w[n + "weight"] for n in qkv], axis=1))
            bias = self.const(p + "qkv.bias", np.concatenate([w[n + "bias"] for n in qkv]))
            xq = self.op("DynamicQuantizeLinear", [x], outputs=3)  # uint8 x, its scale, its zero point
            context = self.op("QAttention", [xq, weight, bias, f"{xq}_1", scale, "", f"{xq}_2"], MS,
                              num_heads=HEADS)  # one unpadded text: no mask
            x = self._norm(self.op("Add", [self._dense(context, w, p + "attention.output.dense"), x]), w,
                           p + "attention.output.LayerNorm")
            gelu = self.op("Gelu", [self._dense(x, w, p + "intermediate.dense")], MS)  # exact: x/2 · (1 + erf(x/√2))
            x = self._norm(self.op("Add", [self._dense(gelu, w, p + "output.dense"), x]), w, p + "output.LayerNorm")
        pooled = self.op("ReduceMean", [x], axes=[1], keepdims=0)  # mean over the tokens (opset 17: an attribute)
        vector = self.op("LpNormalization", [pooled], axis=-1, p=2)
        inputs = [h.make_tensor_value_info("ids", tp.INT64, [1, "tokens"]),
                  h.make_tensor_value_info("positions", tp.INT64, ["tokens"])]
        output = h.make_tensor_value_info(vector, tp.FLOAT, [1, WIDTH])
        graph = h.make_graph(self.nodes, "all-MiniLM-L6-v2", inputs, [output], self.initializers)
        return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid(MS, 1)], ir_version=8)

    def _quantized(self, name: str, weight: np.ndarray) -> tuple[str, str]:
        """`weight` ((in, out) float32) in int8 per output column, and the columns' scales."""
        scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        return self.const(name + ".q", quantized), self.const(name + ".scale", scale.astype(np.float32))

    def _dense(self, x: str, w: Mapping[str, np.ndarray], name: str) -> str:
        """x @ weight + bias in int8: x quantized as it comes (uint8, one scale and zero point for the tensor), the
        int32 product scaled back to float32, in one node."""
        weight, scale = self._quantized(name + ".weight", w[name + ".weight"])
        return self.op("DynamicQuantizeMatMul", [x, weight, scale, "", self.const(name + ".bias", w[name + ".bias"])],
                       MS)

    def _norm(self, x: str, w: Mapping[str, np.ndarray], name: str) -> str:
        return self.op("LayerNormalization", [x, self.const(name + ".weight", w[name + ".weight"]),
                                              self.const(name + ".bias", w[name + ".bias"])], axis=-1, epsilon=EPS)


def _dtype(tp: Any, array: np.ndarray) -> int:
    return {np.dtype(np.int64): tp.INT64, np.dtype(np.int8): tp.INT8}.get(array.dtype, tp.FLOAT)

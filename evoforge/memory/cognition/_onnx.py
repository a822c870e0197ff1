"""MiniLM's forward pass as an ONNX graph run by ONNX Runtime on one thread, for a trial's one or two short texts.
Its 36 dense projections compute in int8: weights quantized once per output channel (symmetric, scale = the
column's largest |w| / 127), each input quantized as it comes (DynamicQuantizeLinear: one scale for the text), so
one 18-token text takes ~2.6 ms instead of ~6.2 ms in float32 on this project's machines. Attention, layer norms,
GELU and pooling stay float32. Vectors agree with the float32 pass of embeddings.py to cosine ≥ 0.988 (mean 0.994
over the 94 texts of benchmarks/retrieval and tests/minilm_reference.json; 0.980 for the empty text), and the
labelled retrieval set ranks as well (benchmarks/cognition.py --retrieval). The graph is built in memory from the
weights already loaded; when `onnxruntime` or `onnx` is not installed, `OnnxForward.build` returns None and the
numpy pass does the work."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HEADS, HEAD_DIM, WIDTH = 12, 32, 384
EPS = 1e-12


class OnnxForward:
    """Hidden states (batch, tokens, 384) of MiniLM for padded token ids and their attention mask."""

    def __init__(self, session: Any, keep: list[Any]) -> None:
        self._session = session
        self._keep = keep  # the OrtValues the session reads the weights from (they must outlive it)

    @classmethod
    def build(cls, weights: Mapping[str, np.ndarray], layers: int) -> OnnxForward | None:
        """The session for `weights` (embeddings.py's dict: names as in model.safetensors, dense and attention
        matrices already transposed to (in, out)); None when ONNX Runtime or onnx is not installed."""
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
        names = list(graph.external)
        values = [ort.OrtValue.ortvalue_from_numpy(graph.external[name]) for name in names]
        options.add_external_initializers(names, values)
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - an ONNX Runtime that cannot run the graph: numpy does
            log.warning("cognition base: ONNX Runtime cannot run the encoder (%s); encoding with numpy", exc)
            return None
        return cls(session, values)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Hidden states of each text run alone, unpadded: an input's int8 scale covers its whole tensor, so a text
        batched with others (or with padding) would get a vector that depends on its neighbours."""
        out = np.zeros((*ids.shape, WIDTH), dtype=np.float32)
        for row in range(ids.shape[0]):
            length = int(mask[row].sum())
            feeds = {"ids": ids[row : row + 1, :length].astype(np.int64),
                     "positions": np.arange(length, dtype=np.int64)}
            out[row, :length] = self._session.run(None, feeds)[0][0]
        return out


class _Graph:
    """Builds the graph node by node; large tensors are declared external (`self.external`: name → array)."""

    def __init__(self, helper: Any, tensor_proto: Any) -> None:
        self.h, self.tp = helper, tensor_proto
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.external: dict[str, np.ndarray] = {}
        self._n = 0
        self._quantized: dict[str, tuple[str, str, str]] = {}  # a tensor's DynamicQuantizeLinear outputs, made once

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

    def op(self, kind: str, inputs: list[str], **attributes: Any) -> str:
        self._n += 1
        out = f"v{self._n}"
        self.nodes.append(self.h.make_node(kind, inputs, [out], **attributes))
        return out

    def minilm(self, w: Mapping[str, np.ndarray], layers: int) -> Any:
        h, tp = self.h, self.tp
        word = self.op("Gather", [self.const("word", w["embeddings.word_embeddings.weight"]), "ids"])
        position = self.op("Gather", [self.const("position", w["embeddings.position_embeddings.weight"]), "positions"])
        kind = self.const("type", w["embeddings.token_type_embeddings.weight"][0])
        x = self.op("Add", [self.op("Add", [word, position]), kind])
        x = self._norm(x, w, "embeddings.LayerNorm")
        heads = self.const("heads", np.array([0, 0, HEADS, HEAD_DIM], dtype=np.int64))
        width = self.const("width", np.array([0, 0, WIDTH], dtype=np.int64))
        scale = self.const("scale", np.array(1.0 / np.sqrt(HEAD_DIM), dtype=np.float32))
        half, one = self.const("half", np.array(0.5, np.float32)), self.const("one", np.array(1.0, np.float32))
        inv_sqrt2 = self.const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
        for layer in range(layers):
            p = f"encoder.layer.{layer}."

            def proj(x: str, name: str, p: str = p) -> str:
                bias = p + name + ".bias"
                return self.op("Add", [self.int8_matmul(x, p + name + ".weight", w[p + name + ".weight"]),
                                       self.const(bias, w[bias])])

            def split(x: str, perm: list[int]) -> str:
                return self.op("Transpose", [self.op("Reshape", [x, heads])], perm=perm)

            q = split(proj(x, "attention.self.query"), [0, 2, 1, 3])
            k = split(proj(x, "attention.self.key"), [0, 2, 3, 1])
            v = split(proj(x, "attention.self.value"), [0, 2, 1, 3])
            scores = self.op("Mul", [self.op("MatMul", [q, k]), scale])  # one unpadded text: no mask
            context = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
            context = self.op("Reshape", [self.op("Transpose", [context], perm=[0, 2, 1, 3]), width])
            x = self._norm(self.op("Add", [proj(context, "attention.output.dense"), x]), w,
                           p + "attention.output.LayerNorm")
            inner = proj(x, "intermediate.dense")  # exact GELU: x/2 · (1 + erf(x/√2))
            gelu = self.op("Mul", [self.op("Mul", [inner, half]),
                                   self.op("Add", [one, self.op("Erf", [self.op("Mul", [inner, inv_sqrt2])])])])
            x = self._norm(self.op("Add", [proj(gelu, "output.dense"), x]), w, p + "output.LayerNorm")
        inputs = [h.make_tensor_value_info("ids", tp.INT64, ["batch", "tokens"]),
                  h.make_tensor_value_info("positions", tp.INT64, ["tokens"])]
        output = h.make_tensor_value_info(x, tp.FLOAT, ["batch", "tokens", WIDTH])
        graph = h.make_graph(self.nodes, "all-MiniLM-L6-v2", inputs, [output], self.initializers)
        return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)

    def int8_matmul(self, x: str, name: str, weight: np.ndarray) -> str:
        """x @ weight in int8 (weight: (in, out) float32): the weight quantized per output column, x as it comes
        (uint8, one scale and zero point for the tensor); the int32 product cast back and scaled. ONNX Runtime fuses
        the four nodes into one (DynamicQuantizeMatMul)."""
        scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        if x not in self._quantized:
            outs = [f"{x}_q", f"{x}_scale", f"{x}_zero"]
            self.nodes.append(self.h.make_node("DynamicQuantizeLinear", [x], outs))
            self._quantized[x] = (outs[0], outs[1], outs[2])
        xq, x_scale, x_zero = self._quantized[x]
        product = self.op("MatMulInteger", [xq, self.const(name + ".q", quantized), x_zero])
        scales = self.op("Mul", [x_scale, self.const(name + ".scale", scale.astype(np.float32))])
        return self.op("Mul", [self.op("Cast", [product], to=self.tp.FLOAT), scales])

    def _norm(self, x: str, w: Mapping[str, np.ndarray], name: str) -> str:
        return self.op("LayerNormalization", [x, self.const(name + ".weight", w[name + ".weight"]),
                                              self.const(name + ".bias", w[name + ".bias"])], axis=-1, epsilon=EPS)


def _dtype(tp: Any, array: np.ndarray) -> int:
    return {np.dtype(np.int64): tp.INT64, np.dtype(np.int8): tp.INT8}.get(array.dtype, tp.FLOAT)

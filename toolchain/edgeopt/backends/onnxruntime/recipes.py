"""INT8 recipes for ONNX Runtime CPU targets, all through ONNX Runtime's own quantizers (the
maintained implementations); the quantize stage builds several and keeps what its selection data
and its timing say. Measured on real pretrained models in benchmarks/real_models.py.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic

from edgeopt.data.dataset import Dataset

DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "EmbedLayerNormalization", "Gather"]  # the last two: int8 embedding tables


class Reader(CalibrationDataReader):
    """Feeds samples one at a time (batch 1: the shape the deployed model sees); rewindable."""

    def __init__(self, data: Dataset, input_names: set[str] | None = None):
        self._data, self._names, self._row = data, input_names, 0

    def get_next(self):
        if self._row >= len(self._data):
            return None
        row, self._row = self._row, self._row + 1
        return {k: v for k, v in self._data.batch(row, row + 1).items() if self._names is None or k in self._names}

    def __len__(self) -> int:
        return len(self._data)

    def rewind(self) -> None:
        self._row = 0


def fuse_encoder(fp32: Path, out: Path, *, gelu_approximation: bool = True) -> Path:
    """ONNX Runtime's transformer optimizer (Attention, SkipLayerNormalization, FastGelu,
    EmbedLayerNormalization); reused when `out` exists. Tanh GELU: a faster kernel; the scorer
    checks what it costs."""
    if out.exists():
        return out
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu_approximation = gelu_approximation
    fused = optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0, opt_level=0,
                           optimization_options=options)
    fused.save_model_to_file(str(out))
    return out


FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "FastGelu", "BiasGelu", "Gelu", "GemmFastGelu", "SkipSimplifiedLayerNormalization")


def fused_operators(path: Path) -> dict[str, int]:
    """{fused op type: count} in a graph fuse_encoder wrote (what the optimizer's statistics say)."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def dynamic(prepared: Path, out: Path, *, per_channel: bool, exclude: list[str] | None = None,
            reduce_range: bool = False, ops: list[str] | None = None) -> Path:
    """Dynamic INT8: weights quantized offline, activations per run; on a fused graph the
    Attention becomes QAttention (its QKV projection in INT8 as well)."""
    quantize_dynamic(str(prepared), str(out), op_types_to_quantize=ops or DYNAMIC_OPS, nodes_to_exclude=exclude or [],
                     per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def matmul_nbits8(prepared: Path, out: Path, *, block_size: int = 128, accuracy_level: int = 4,
                  exclude: list[str] | None = None) -> Path:
    """Blockwise 8-bit weights (MatMulNBits) with int8 compute (accuracy level 4)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level,
                                          bits=8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(prepared)), bits=8, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, nodes_to_exclude=exclude or [], algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


def float_for_other_consumers(path: Path, compute_ops: list[str]) -> None:
    """ONNX Runtime rewires every consumer of a quantized tensor to its DequantizeLinear output;
    give the non-compute ones (a residual Add, a mask path) the float tensor back, so TensorRT sees
    Q/DQ only before Conv/Gemm/MatMul."""
    model = onnx.load(str(path))
    produced_by = {o: n for n in model.graph.node for o in n.output}
    original = {}
    for node in model.graph.node:
        source = produced_by.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is not None and source.op_type == "QuantizeLinear":
            original[node.output[0]] = source.input[0]
    for node in model.graph.node:
        if node.op_type not in compute_ops and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            for index, name in enumerate(node.input):
                if name in original:
                    node.input[index] = original[name]
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    while True:  # drop Q/DQ pairs nobody reads any more
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    onnx.save(model, str(path))

"""FP32 causal-LM ONNX -> weight-only INT4 / INT8 (com.microsoft MatMulNBits), through ONNX
Runtime's own `MatMulNBitsQuantizer`.

Every MatMul with a constant weight becomes MatMulNBits: blocks of `block_size` weights along K,
one scale per block, zero points unless symmetric. `accuracy_level` 4 lets the CPU kernel compute
with int8 activations (faster where the CPU has VNNI / dot-product instructions). The algorithm is
round-to-nearest by default; HQQ and GPTQ are ONNX Runtime's other weight-only algorithms (GPTQ
needs calibration inputs, not wired here yet).

The embedding Gather and a tied LM head stay float: optimum's export keeps the LM head as a MatMul
on the transposed embedding, which the quantizer does take (8-bit is kept for it unless `bits`
says otherwise via `head_bits`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgeopt.errors import BadInput

ALGORITHMS = ("rtn", "hqq")


@dataclass(frozen=True)
class WeightOnlyConfig:
    bits: int = 4
    block_size: int = 32  # GGUF's block: a Q4_x/Q8_0 file's grid lines up with ours
    symmetric: bool = False
    accuracy_level: int = 4
    algorithm: str = "rtn"

    def params(self) -> dict:
        return asdict(self)


def quantize(fp32: Path, out: Path, config: WeightOnlyConfig) -> Path:
    """Write the quantized model to `out` (one file, weights inline: 4-bit 135M fits in 2 GB)."""
    if config.bits not in (4, 8):
        raise BadInput(f"weight-only bits {config.bits}: expected 4 or 8")
    if config.algorithm not in ALGORITHMS:
        raise BadInput(f"weight-only algorithm {config.algorithm}: expected one of {', '.join(ALGORITHMS)}")
    # heavy: onnx and ONNX Runtime's quantization tools
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    model = onnx.load(str(fp32))
    if config.algorithm == "hqq":
        algo = nbits.HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=config.bits)
    else:
        algo = nbits.DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                                  accuracy_level=config.accuracy_level, bits=config.bits)
    quantizer = nbits.MatMulNBitsQuantizer(model, bits=config.bits, block_size=config.block_size,
                                           is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                           algo_config=algo)
    quantizer.process()
    out.parent.mkdir(parents=True, exist_ok=True)
    quantized = quantizer.model.model
    for node in quantized.graph.node:  # HQQ leaves accuracy_level unset; the CPU int8 path needs it
        if node.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", config.accuracy_level))
    onnx.save_model(quantized, str(out))
    return out


def count_quantized(onnx_path: Path) -> dict:
    import onnx  # heavy

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    return {"matmul_nbits": ops.count("MatMulNBits"), "matmul_float": ops.count("MatMul")}

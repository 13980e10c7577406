"""FP32 causal-LM ONNX -> weight-only INT4 / INT8 (com.microsoft MatMulNBits), through ONNX
Runtime's own `MatMulNBitsQuantizer`.

Every MatMul with a constant weight becomes MatMulNBits: blocks of `block_size` weights along K,
one scale per block, zero points unless symmetric. `accuracy_level` 4 lets the CPU kernel compute
with int8 activations (faster where the CPU has VNNI / dot-product instructions). The algorithm is
round-to-nearest by default; HQQ and GPTQ are ONNX Runtime's other weight-only algorithms (GPTQ
needs calibration inputs, not wired here yet).

The embedding Gather stays float. The LM head (the MatMul writing `logits`) is left out of the
`bits` pass on every graph: by default it stays fp32 (measured: 16% of an int8 decode step on
SmolLM2-135M). optimum's export keeps a tied head as a MatMul on `Transpose(embedding)` (its B is
not an initializer); onnxruntime-genai's builder keeps the transposed weight as the MatMul's
initializer and feeds the embedding Gather from its Transpose. `head_bits` 8 or 4 gives the head
its own transposed initializer where needed and quantizes it at that width in a second pass.
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
    head_bits: int | None = None  # None: a tied LM head stays fp32; 8 or 4: MatMulNBits at that width

    def params(self) -> dict:
        return asdict(self)


# The INT4 candidate of a GGUF source, whose blocks models/gguf.apply_blocks then replaces with the
# file's own (exact). accuracy_level 1 (fp32 compute) keeps it exact: SmolLM2 +0.00% perplexity,
# 100% greedy agreement, 1.79x optimum's FP32 decode; level 4 (int8 activations) is 1.29x faster
# still but +0.46% and 59% agreement (< the 70% target). An 8-bit head (the file's Q8_0 blocks,
# also exact) measured 0.32x FP32 at level 1 (no fast fp32 path for 8-bit MatMulNBits here) and
# 47% agreement at level 4, so the head stays fp32. benchmarks/llm_graphs/README.md, busy host.
EXACT_GGUF = WeightOnlyConfig(bits=4, accuracy_level=1)


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
    if config.head_bits:
        _untie_head(model)
    heads = _head_matmuls(model)
    if config.algorithm == "hqq":
        algo = nbits.HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=config.bits)
    else:
        algo = nbits.DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                                  accuracy_level=config.accuracy_level, bits=config.bits)
    quantizer = nbits.MatMulNBitsQuantizer(model, bits=config.bits, block_size=config.block_size,
                                           is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                           algo_config=algo, nodes_to_exclude=heads)
    quantizer.process()
    if heads and config.head_bits:  # second pass: only the head's MatMul still has a constant B
        head_algo = nbits.DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                                       accuracy_level=config.accuracy_level, bits=config.head_bits)
        quantizer = nbits.MatMulNBitsQuantizer(quantizer.model.model, bits=config.head_bits, block_size=config.block_size,
                                               is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                               algo_config=head_algo)
        quantizer.process()
    out.parent.mkdir(parents=True, exist_ok=True)
    quantized = quantizer.model.model
    for node in quantized.graph.node:  # HQQ leaves accuracy_level unset; the CPU int8 path needs it
        if node.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", config.accuracy_level))
    onnx.save_model(quantized, str(out))
    return out


def _untie_head(model) -> list[str]:
    """MatMul(x, Transpose(initializer)) -> MatMul(x, transposed initializer); returns those MatMuls' names."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    names = []
    for node in model.graph.node:
        source = producers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if source is None or source.op_type != "Transpose" or source.input[0] not in inits:
            continue
        weight = numpy_helper.to_array(inits[source.input[0]])
        if weight.ndim != 2:
            continue
        name = source.input[0] + "_transposed_head"
        model.graph.initializer.append(numpy_helper.from_array(weight.T.copy(), name))
        node.input[1] = name
        names.append(node.name)
    used = {i for n in model.graph.node for i in n.input}
    for node in [n for n in model.graph.node if n.op_type == "Transpose" and n.output[0] not in used]:
        model.graph.node.remove(node)
    return names


def _head_matmuls(model) -> list[str]:
    """The MatMuls that write a graph output named logits (the LM head)."""
    outputs = {o.name for o in model.graph.output if o.name == "logits"}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and outputs.intersection(n.output)]


def count_quantized(onnx_path: Path) -> dict:
    import onnx  # heavy

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    return {"matmul_nbits": ops.count("MatMulNBits"), "matmul_float": ops.count("MatMul")}

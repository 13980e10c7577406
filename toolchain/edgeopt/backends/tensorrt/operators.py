"""Which ONNX a TensorRT release's parser reads: the export opset per target, and the operators.

onnx-tensorrt 8.5 and 8.6 read opsets up to 17 and do not warn on newer ones: ReduceMean with
opset-18 axes-as-input reduces over every axis, and LayerNormalization (opset 17) is missing in
8.5. So a target pinning TensorRT 8.x exports at opset 17 and every other at 18 (10.x reads 9 to
20), and the compile stage refuses, in one line naming the op, an ONNX its parser cannot read,
before a plan is written or anything is copied to a device.

SUPPORTED lists the operators marked "Y" in docs/operators.md of onnx-tensorrt's release
branches (8.5-GA, 8.6-GA, 10.1-GA; tests/data/onnx-tensorrt-operators holds the copies the test
compares against). Releases after 10.1 use 10.1's table as the floor (NVIDIA only adds ops).
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import BadInput, cause_text

DEFAULT_OPSET = 18
TENSORRT_8_OPSET = 17

# release branch -> the highest opset its parser reads; SUPPORTED_TEXT: the operators it reads
MAX_OPSET = {"8.5-GA": 17, "8.6-GA": 17, "10.1-GA": 20}
SUPPORTED_TEXT = {
    "8.5-GA": """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample HardSigmoid HardSwish Identity If ImageScaler InstanceNormalization IsNaN LRN LSTM
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
    ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
    Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """,
    "8.6-GA": """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization HardSigmoid HardSwish Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
    Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear
    RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
    Trilu Unsqueeze Upsample Where Xor
    """,
    "10.1-GA": """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
    Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Hardmax
    Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu
    Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
    ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
    Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """,
}
SUPPORTED = {release: frozenset(text.split()) for release, text in SUPPORTED_TEXT.items()}


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in (version.split(".") + ["0"])[:2]]
    return parts[0], parts[1]


def release_for(tensorrt: str) -> str:
    """The onnx-tensorrt branch whose operator table applies to a TensorRT version."""
    major, minor = _major_minor(tensorrt)
    if major < 8 or (major, minor) < (8, 5):
        raise BadInput(f"TensorRT {tensorrt} is older than 8.5, the oldest release edgeopt builds for")
    if major == 8:
        return "8.5-GA" if minor == 5 else "8.6-GA"
    return "10.1-GA"


def export_opset(target) -> int:
    """The ONNX opset to export for `target`: 17 where its TensorRT is 8.x, else 18."""
    if target.backend == "tensorrt" and target.software.tensorrt and _major_minor(target.software.tensorrt)[0] < 10:
        return TENSORRT_8_OPSET
    return DEFAULT_OPSET


def check_operators(onnx_path: Path, tensorrt: str, target_name: str) -> None:
    """Refuse (BadInput, one line) an ONNX whose opset or an operator the target's parser lacks."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a damaged file
        raise BadInput(f"{onnx_path}: not a readable ONNX model ({cause_text(exc)})") from None
    release = release_for(tensorrt)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset > MAX_OPSET[release]:
        raise BadInput(f"{onnx_path.name}: opset {opset}, but TensorRT {tensorrt} (target '{target_name}') reads "
                       f"opsets up to {MAX_OPSET[release]}; export at opset {MAX_OPSET[release]}")
    supported = SUPPORTED[release]
    for node in _nodes(model.graph):
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            raise BadInput(f"{onnx_path.name}: operator {op} (node '{node.name or '?'}') is not supported by "
                           f"TensorRT {tensorrt}'s ONNX parser (target '{target_name}')")


def _nodes(graph):
    """Every node, including those in If/Loop/Scan subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub)

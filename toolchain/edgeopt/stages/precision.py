"""`--precision int8|fp16|fp32`: which precision a build asks of the target, and the FP16 ONNX
TensorRT 11's strongly typed networks need (they take precision from the ONNX types, not flags).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.targets import TargetProfile

PRECISIONS = ("int8", "fp16", "fp32")
# /proc/cpuinfo flags of CPUs with FP16 arithmetic (ARMv8.2 half-precision SIMD, AVX512-FP16)
NATIVE_FP16_FLAGS = {"asimdhp", "fphp", "avx512_fp16"}


def apply_precision(target: TargetProfile, precision: str | None) -> TargetProfile:
    """The target with build.precision overridden; a CPU target refuses fp16 unless its profile
    lists a flag for native FP16 arithmetic (otherwise ONNX Runtime would emulate it, slower than FP32)."""
    if precision is None or precision == target.build.precision:
        return target
    if precision not in PRECISIONS:
        raise BadInput(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and target.device.kind == "cpu" and not NATIVE_FP16_FLAGS & set(target.device.cpu_flags):
        raise BadInput(f"--precision fp16: target '{target.name}' ({target.device.product}) does not compute FP16 "
                       "natively (no asimdhp/avx512_fp16 in its cpu_flags); use int8 or fp32")
    return target.model_copy(update={"build": target.build.model_copy(update={"precision": precision})})


def needs_fp16_onnx(target: TargetProfile) -> bool:
    return target.backend == "tensorrt" and target.build.precision == "fp16" and (target.tensorrt_major or 0) >= 11


def write_fp16_onnx(fp32_path: Path, out_path: Path) -> Path:
    """FP16 weights and activations with FP32 inputs and outputs (keep_io_types: the data and the
    validation stay FP32), via onnxconverter-common's float16 pass."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError:
        raise MissingEnvironment("an FP16 ONNX for TensorRT 11 needs onnxconverter-common: "
                                 "pip install 'onnxconverter-common>=1.14'") from None
    model = onnx.load(str(fp32_path))
    converted = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(out_path))
    return out_path


class Fp16StageResult(BaseModel):
    source: str
    converter: str


class Fp16Stage:
    """Fp16OnnxFromFp32: the FP16 ONNX a strongly typed TensorRT 11 network builds FP16 from."""

    name = "fp16"

    def __init__(self, fp32: Artifact | Path):
        self.fp32_artifact = Artifact.of(fp32)
        self.fp32, self.out_name = self.fp32_artifact.path, LAYOUT.fp16_onnx
        self.reads, self.writes = (self.fp32.name,), (LAYOUT.fp16_onnx,)

    def params(self) -> dict:
        return {"keep_io_types": True}

    def inputs(self) -> dict:
        return {"onnx_fp32": self.fp32_artifact.sha256}

    def run(self, folder: Path) -> Fp16StageResult:
        write_fp16_onnx(self.fp32, folder / self.out_name)
        return Fp16StageResult(source=self.fp32.name, converter="onnxconverter-common float16 (keep_io_types)")

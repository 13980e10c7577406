"""Every TensorRT name the code uses exists in NVIDIA's compiled bindings of the releases it
builds for: tests/data/tensorrt-api/<version>.txt (copied from ../shared/tensorrt-api; its README
says how they were made). Names are collected from the sources (attributes of TensorRT objects,
enum members passed by name) and from the plans of every shipped GPU profile."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgeopt
from edgeopt import targets
from edgeopt.backends.tensorrt.plan import make_plan
from edgeopt.models.spec import InputSpec

LISTS = Path(__file__).resolve().parents[2] / "data" / "tensorrt-api"
ROOT = Path(edgeopt.__file__).parent
SOURCES = [ROOT / "backends/tensorrt" / n for n in ("api.py", "builder.py", "session.py")] + [
    ROOT / "device_runner.py", ROOT / "device_runtime.py"]
# variables that hold TensorRT objects in those sources
RECEIVERS = {"trt", "builder", "network", "parser", "config", "profile", "cache", "engine", "context", "runtime",
             "error", "inspector"}
SELF_RECEIVERS = {"engine", "context", "runtime"}
PYTHON_DEFINED = {"nptype", "Logger", "ILogger", "__version__", "WARNING"}  # tensorrt/__init__.py, not the .so
ONLY_BEFORE_11 = {"EXPLICIT_BATCH", "IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile",
                  "INT8", "FP16"}  # guarded by plan.explicit_batch / int8_mode implicit / TensorRT < 11 flags


# edgeopt's own objects and numpy arrays that share those variable names in some functions
NOT_TENSORRT = {"argmax", "build", "device", "partition", "trt"}  # builder.trt: EngineBuilder's module


def _root(node: ast.AST) -> str | None:
    """The receiver a chain of attributes and calls starts from: 'trt', 'config', 'self.engine'."""
    while isinstance(node, (ast.Attribute, ast.Call)):
        inner = node.func if isinstance(node, ast.Call) else node.value
        if isinstance(node, ast.Attribute) and isinstance(inner, ast.Name) and inner.id == "self":
            return f"self.{node.attr}"
        node = inner
    return node.id if isinstance(node, ast.Name) else None


def used_names() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                root = _root(node.value)
                if root in RECEIVERS or root in {f"self.{r}" for r in SELF_RECEIVERS}:
                    names.add(node.attr)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "flag":
                names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return names - NOT_TENSORRT


def plan_names(version: str) -> set[str]:
    names: set[str] = set()
    for profile in targets.load_all().values():
        if profile.backend != "tensorrt" or (profile.build.int8_mode == "implicit" and version.startswith("11")):
            continue
        sparse = profile.device.sparse_2_4 or None
        names |= set(make_plan(profile, [InputSpec(name="x", shape=(1, 4))], onnx="m.onnx", tensorrt=version,
                               sparsity=sparse).builder_flags)
    return names


def binding_names(version: str) -> tuple[set[str], str]:
    text = (LISTS / f"{version}.txt").read_text()
    return set(text.split()), text


def test_the_collector_sees_the_calls_that_matter():
    names = used_names()
    assert {"create_optimization_profile", "add_optimization_profile", "set_shape", "set_timing_cache",
            "build_serialized_network", "set_tensor_address", "execute_async_v3", "create_engine_inspector",
            "get_engine_information", "DETAILED", "WORKSPACE", "EXPLICIT_BATCH", "STRONGLY_TYPED"} <= names


@pytest.mark.parametrize("version", ["10.3.0", "10.16", "11.1"])
def test_every_name_used_exists_in_the_bindings(version):
    listed, text = binding_names(version)
    wanted = (used_names() | plan_names(version)) - PYTHON_DEFINED
    if version.startswith("11"):
        wanted -= ONLY_BEFORE_11
    # a name may be merged into the tail of a longer string in the .so (README): search those too
    missing = sorted(n for n in wanted if n not in listed and not any(w.endswith(n) for w in listed))
    assert missing == [], f"TensorRT {version} bindings lack {missing}"


def test_tensorrt_11_has_no_precision_flags_or_calibrators():
    listed, _ = binding_names("11.1")
    assert {"IInt8EntropyCalibrator2", "int8_calibrator", "EXPLICIT_BATCH"}.isdisjoint(listed)
    assert "FP16" not in plan_names("11.1") and "INT8" not in plan_names("11.1")

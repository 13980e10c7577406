"""What a package carries for field monitoring: the build's calibration statistics, the Q/DQ ONNX
the monitor runs (already in a GPU package; added to a CPU one, whose deployable is ONNX Runtime's
fused graph without those tensors), and the monitor itself (field/monitor.py as field_monitor.py,
field/capture.py beside it), so a device runs it with numpy and ONNX Runtime only. Never a capture
folder or field data: packages list their files by name (package/bundle.py), and this list names
only these."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

from edgeopt.build_dir import LAYOUT

MODULES = {LAYOUT.field_monitor_py: ("edgeopt.field.monitor", "field monitor: saturation and PSI per quantized tensor (numpy + ONNX Runtime)"),
           LAYOUT.field_capture_py: ("edgeopt.field.capture", "field capture with caps, for recalibration (numpy)")}


def field_files(build_dir: Path, shipped: dict) -> list[tuple[str, str, bytes | None]]:
    """(name, role, content or None: the build's own file) for an INT8 build with calibrated
    tensors; `shipped`: the package's entries so far (a file already there keeps its role)."""
    path = Path(build_dir) / LAYOUT.calib_stats
    if not path.is_file() or not json.loads(path.read_text()).get("tensors"):
        return []  # an FP32/FP16 build, a dynamic INT8 one (nothing calibrated), or one made before issue 22
    files = [(LAYOUT.calib_stats, "calibration statistics: per quantized tensor, range and histogram", None)]
    if LAYOUT.int8_onnx not in shipped:
        files.append((LAYOUT.int8_onnx, "Q/DQ ONNX the field monitor runs (its quantized tensors as outputs)", None))
    return files + [(name, role, Path(find_spec(module).origin).read_bytes()) for name, (module, role) in MODULES.items()]

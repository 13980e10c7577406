"""What a package carries for field monitoring: the build's calibration statistics and monitor
model, and the monitor itself (field/monitor.py as field_monitor.py, field/capture.py beside it),
so a device runs it with numpy and ONNX Runtime only. Never a capture folder or field data:
packages list their files by name (package/bundle.py), and this list names only these four."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from edgeopt.build_dir import LAYOUT

MODULES = {LAYOUT.field_monitor_py: ("edgeopt.field.monitor", "field monitor: saturation and PSI per quantized tensor (numpy + ONNX Runtime)"),
           LAYOUT.field_capture_py: ("edgeopt.field.capture", "field capture with caps, for recalibration (numpy)")}


def field_files(build_dir: Path) -> list[tuple[str, str, bytes | None]]:
    """(name, role, content or None: the build's own file) for an INT8 build with calibration statistics."""
    if not (Path(build_dir) / LAYOUT.monitor_onnx).is_file():
        return []  # an FP32/FP16 build, a dynamic INT8 one (nothing calibrated), or one made before issue 22
    files = [(LAYOUT.calib_stats, "calibration statistics: per quantized tensor, range and histogram", None),
             (LAYOUT.monitor_onnx, "monitor model: the Q/DQ ONNX with its quantized tensors as outputs", None)]
    return files + [(name, role, Path(find_spec(module).origin).read_bytes()) for name, (module, role) in MODULES.items()]

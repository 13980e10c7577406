"""`edgeopt feedback`: replay field inputs through the FP32 model and the deployed artifact, and
judge what the field monitor records against the build's calibration statistics.

Per quantized tensor: saturation (share of values outside the calibrated range) and PSI of its
histogram against calibration's; per output: fidelity to FP32 and the task metric (accuracy where
the field data has labels), measured by the validate stage's own code (backends/onnxruntime
validate, edgeopt.compare). An alert is a tensor over `max_field_saturation` or `max_field_psi`
(the target profile's gates, or flags), or a field accuracy drop over `max_accuracy_drop`.
A device's field_stats.json (field/monitor.py) is judged the same way, without replay.
Rendering is field/report.py's; recalibration (--rebuild) is field/recalibrate.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.build_dir import LAYOUT, find_build, read_build, verify_artifact
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.field import monitor
from edgeopt.models.spec import ModelSpec


@dataclass(frozen=True)
class Thresholds:
    saturation: float
    psi: float
    accuracy_drop: float

    @classmethod
    def of(cls, gates, saturation: float | None = None, psi: float | None = None) -> "Thresholds":
        """The target's gates, each overridden by its flag when given."""
        return cls(gates.max_field_saturation if saturation is None else saturation,
                   gates.max_field_psi if psi is None else psi, gates.max_accuracy_drop)


@dataclass
class Build:
    """A build directory as feedback reads it."""

    folder: Path
    manifest: dict
    target: object
    spec: ModelSpec
    calib_stats: dict

    @classmethod
    def read(cls, path: Path) -> "Build":
        folder = find_build(Path(path))
        manifest, target = read_build(folder)
        stats_path = folder / LAYOUT.calib_stats
        if not stats_path.is_file():
            raise BadInput(f"{stats_path}: missing; field feedback needs an INT8 build made by an edgeopt with "
                           "calibration statistics (rebuild it)")
        verify_artifact(folder, manifest, LAYOUT.calib_stats)
        stats = _json(stats_path, "calib_stats")
        return cls(folder, manifest, target, ModelSpec.model_validate(manifest["model"]["spec"]), stats)

    @property
    def deployed(self) -> tuple[Path, str | None]:
        """The artifact replayed as deployed, and a note when it stands in for one not on this host."""
        if self.target.backend == "onnxruntime" and self.manifest.get("deployable"):
            return verify_artifact(self.folder, self.manifest, self.manifest["deployable"]), None
        return (verify_artifact(self.folder, self.manifest, LAYOUT.int8_onnx),
                "the TensorRT engine is not run here: its Q/DQ ONNX on ONNX Runtime CPU stands for it")


JSON_LIMIT = 64 << 20  # a field_stats.json of 10,000 tensors is 6 MB


def _json(path: Path, kind: str) -> dict:
    from edgeopt.safe_io import read_json

    doc = read_json(path, JSON_LIMIT, f"the {kind} document")
    if doc.get("kind") != kind or not isinstance(doc.get("tensors"), dict):
        raise BadInput(f"{path}: not a {kind} document (key 'kind' is not '{kind}' or 'tensors' is missing)")
    return doc


def read_field(build: Build, path: Path) -> Dataset | dict:
    """--field: a device's field_stats.json (a dict), a folder of captured .npz/.npy samples, or
    data the build's readers accept (.npz, an image folder, .txt/.jsonl texts)."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: --field data not found")
    if path.suffix == ".json":
        doc = _json(path, "field_stats")
        if doc.get("model_sha256") and doc["model_sha256"] != build.calib_stats.get("model_sha256"):
            raise BadInput(f"{path}: recorded for another model (model_sha256 differs from {LAYOUT.calib_stats})")
        return doc
    if path.is_dir() and any(path.glob("*.np[yz]")) and not any(p.is_dir() for p in path.iterdir()):
        return captured(path, build.spec)
    from edgeopt.data import load_dataset
    from edgeopt.data.build_data import reader_of_build

    return load_dataset(path, build.spec, "field", reader_of_build(build.manifest, build.spec))


def captured(folder: Path, spec: ModelSpec) -> Dataset:
    """A capture folder (field/capture.py: one .npz per sample; .npy for a single-input model) as
    one Dataset, each file checked by the .npz reader's rules (names, shapes, dtype kind, header
    sizes; float16 captures cast to the model's dtype); no pickle, no link leaving the folder."""
    from edgeopt.data.npz import read_npz
    from edgeopt.safe_io import check_regular, links_leaving

    leaving = links_leaving(folder)
    if leaving:
        raise BadInput(f"{leaving[0]}: a link leaving the --field folder {folder}; edgeopt reads only what you named")
    parts = []
    for path in sorted(folder.glob("*.np[yz]")):
        if path.suffix == ".npz":
            parts.append(read_npz(path, spec.inputs).inputs)
            continue
        if len(spec.inputs) != 1:
            raise BadInput(f"{path}: a .npy sample holds one array; the model has {len(spec.inputs)} inputs (capture .npz)")
        try:
            array = np.load(check_regular(path, "a captured sample"), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise BadInput(f"{path}: not a readable .npy ({exc.__class__.__name__}: {exc})") from None
        parts.append({spec.inputs[0].name: array if array.ndim == len(spec.inputs[0].shape) else array[None]})
    try:
        inputs = {i.name: np.concatenate([p[i.name] for p in parts]).astype(i.dtype) for i in spec.inputs}
    except ValueError as exc:
        raise BadInput(f"{folder}: captured samples have different shapes ({exc})") from None
    return Dataset(inputs, None, folder)


def observe(build: Build, data: Dataset) -> dict:
    """field_stats of `data` as the monitor records them (every sample)."""
    if not build.calib_stats["tensors"]:  # dynamic INT8: nothing calibrated to monitor
        return {"kind": "field_stats", "rate": 1.0, "seen": len(data), "sampled": len(data), "tensors": {}}
    model = verify_artifact(build.folder, build.manifest, LAYOUT.int8_onnx)
    recorder = monitor.FieldMonitor(str(model), build.calib_stats, rate=1.0)
    for row in range(len(data)):
        recorder.record(data.batch(row, row + 1))
    return recorder.document()


def fidelity(build: Build, data: Dataset) -> dict:
    """The deployed artifact vs FP32 on `data`, as the validate stage measures it (no timing)."""
    from edgeopt import host
    from edgeopt.backends.onnxruntime.validate import validate  # onnxruntime: only for a replay

    candidate, note = build.deployed
    fp32 = verify_artifact(build.folder, build.manifest, LAYOUT.fp32_onnx)
    result = validate(fp32, candidate, data, build.spec.task, latency_on_host=False, threads=host.default_threads(build.target),
                      spec=build.spec, batch=build.target.build.batch.opt)
    return {**result.model_dump(mode="json"), "artifact": candidate.name, "note": note}


def tensor_rows(build: Build, field_stats: dict, limits: Thresholds) -> list[dict]:
    """Per tensor: saturation and PSI against calibration, each judged. PSI is recomputed from the
    histograms here, so a device's report is judged by the workstation's rule."""
    rows = []
    for name, calib in build.calib_stats["tensors"].items():
        seen = field_stats["tensors"].get(name)
        if seen is None or not sum(seen["histogram"]):
            rows.append({"metric": f"saturation {name}", "kind": "field", "baseline": None, "current": None,
                         "verdict": "not judged", "reason": "not observed in the field data"})
            continue
        if len(seen["histogram"]) != len(calib["histogram"]):
            raise BadInput(f"tensor '{name}': field histogram has {len(seen['histogram'])} bins, calibration "
                           f"{len(calib['histogram'])} (field_stats.json from another build?)")
        sat, drift = monitor.saturation(seen["histogram"], calib["low"]), monitor.psi(calib["histogram"], seen["histogram"])
        base = monitor.saturation(calib["histogram"], calib["low"])
        rows.append({"metric": f"saturation {name}", "kind": "field", "tensor": name, "baseline": round(base, 8),
                     "current": round(sat, 8), "threshold": limits.saturation,
                     "verdict": "regressed" if sat > limits.saturation else "unchanged",
                     "reason": f"{sat:.3%} of values outside the calibrated range (max {limits.saturation:.2%})"})
        rows.append({"metric": f"psi {name}", "kind": "field", "tensor": name, "baseline": 0.0, "current": round(drift, 6),
                     "threshold": limits.psi, "verdict": "regressed" if drift > limits.psi else "unchanged",
                     "reason": f"PSI {drift:.3f} vs calibration (max {limits.psi:g})"})
    return rows


def fidelity_rows(result: dict, limits: Thresholds) -> list[dict]:
    """Per output: cosine to FP32 (reported) and the task metric (judged against max_accuracy_drop)."""
    rows = []
    for out in result["outputs"]:
        rows.append({"metric": f"cosine_to_fp32 {out['name']}", "kind": "accuracy", "baseline": 1.0,
                     "current": out["cosine_mean"], "verdict": "unchanged", "reason": "reported, not judged"})
        if out.get("metric") and out.get("drop") is not None:
            judged = out["drop"] > limits.accuracy_drop
            rows.append({"metric": f"{out['metric']} {out['name']}".replace("top-1 accuracy", "accuracy"),
                         "kind": "accuracy", "baseline": out["fp32"], "current": out["candidate"],
                         "delta": out["candidate"] - out["fp32"], "threshold": limits.accuracy_drop,
                         "verdict": "regressed" if judged else "unchanged"})
    return rows


def feedback(build_path: Path, field: Path, *, saturation: float | None = None, psi: float | None = None) -> dict:
    """The feedback report document (the report's schema: verdict + comparisons, plus 'field')."""
    from edgeopt.report.compare import LATENCY_TOLERANCE, SCHEMA_VERSION

    build = Build.read(build_path)
    limits = Thresholds.of(build.target.gates, saturation, psi)
    data = read_field(build, field)
    notes, result = [], None
    if not build.calib_stats["tensors"]:
        notes.append(f"{LAYOUT.calib_stats}: {build.calib_stats.get('note') or 'no quantized tensor'}; only fidelity is judged")
    if isinstance(data, dict):
        field_stats = data
        notes.append(f"{Path(field).name}: recorded by the field monitor ({field_stats.get('sampled')} of "
                     f"{field_stats.get('seen')} inputs sampled); no replay here, so no fidelity to FP32")
    else:
        field_stats, result = observe(build, data), fidelity(build, data)
        notes += [result["note"]] if result["note"] else []
    rows = tensor_rows(build, field_stats, limits) + (fidelity_rows(result, limits) if result else [])
    alerts = [r for r in rows if r["verdict"] == "regressed"]
    name = f"field data {Path(field).name}: {build.manifest['model']['name']} -> {build.target.name}"
    comparison = {"name": name, "model": build.manifest["model"]["name"], "target": build.target.name,
                  "verdict": "regressed" if alerts else "unchanged", "rows": rows, "environment_warnings": notes,
                  "tolerances": {"latency": LATENCY_TOLERANCE, "accuracy": limits.accuracy_drop}, "sensitivity": None}
    return {"schema_version": SCHEMA_VERSION, "kind": "field_feedback", "verdict": comparison["verdict"],
            "comparisons": [comparison],
            "field": {"build_dir": str(build.folder), "data": str(field), "samples": field_stats.get("sampled"),
                      "thresholds": {"max_field_saturation": limits.saturation, "max_field_psi": limits.psi,
                                     "max_accuracy_drop": limits.accuracy_drop},
                      "alerts": [r["metric"] for r in alerts], "stats": field_stats, "fidelity": result,
                      "calibration_histograms": {n: t["histogram"] for n, t in build.calib_stats["tensors"].items()}}}

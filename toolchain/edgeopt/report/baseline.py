"""Baselines: a build's metrics, raw latency samples and environment in one JSON file, saved from
`edgeopt build --save-baseline` and judged against by `edgeopt build --baseline` / `edgeopt report`."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeopt.build_dir import LAYOUT, Manifest, read_manifest, typed_manifest, write_json_atomic
from edgeopt.errors import BadInput
from edgeopt.report import compare as comparing
from edgeopt.report import gates as judging
from edgeopt.report.compare import ACCURACY_TOLERANCE, LATENCY_TOLERANCE  # noqa: F401  (the CLI's defaults)

SCHEMA_VERSION = 1
LIBRARIES = ("edgeopt", "numpy", "onnx", "onnxruntime", "torch", "tensorrt")


def _cpu() -> tuple[str | None, list[str]]:
    model, flags = platform.processor() or None, []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = sorted(value.split())
    except OSError:
        pass
    return model, flags


def environment(threads: int | None = None) -> dict[str, Any]:
    """What makes two latency measurements comparable: CPU, threads, library versions, GPU."""
    model, flags = _cpu()
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = round(os.getloadavg()[0], 2)  # how busy the host was around the measurement
    except (OSError, AttributeError):
        load = None
    return {"machine": platform.machine(), "cpu_model": model, "cpu_flags": flags, "cores": os.cpu_count(), "load_1m": load,
            "threads": threads, "onnxruntime": versions["onnxruntime"], "tensorrt": versions["tensorrt"],
            "gpu": os.environ.get("EDGEOPT_GPU_NAME"), "libraries": versions}


def document(result: dict, samples: dict | None = None) -> dict[str, Any]:
    """The baseline document of one `edgeopt build --json` result (and its build's raw samples)."""
    if samples is None and result.get("build_dir"):
        path = Path(result["build_dir"]) / LAYOUT.latency_samples
        if path.is_file():
            samples = json.loads(path.read_text())
    samples = samples or {}
    metrics = result["metrics"]
    keep = ("accuracy", "agreement", "cosine_mean", "cosine_min", "latency_ms")
    return {"schema_version": SCHEMA_VERSION, "model": result["model"]["name"], "target": result["target"]["name"],
            "metrics": {p: {k: metrics[p].get(k) for k in keep} for p in ("fp32", "int8")},
            "samples_ms": {p: samples[p] for p in ("fp32", "int8") if p in samples},
            "gates": result.get("gates", []), "quantization": result.get("quantization"),
            "llm": comparing.llm_part(metrics.get("llm")),  # decoder-only LLM builds (issue 18)
            "environment": environment(samples.get("threads") or (metrics.get("llm") or {}).get("threads"))}


def save(result: dict, path: str | Path) -> Path:
    """Store a build result as a baseline file."""
    write_json_atomic(path, document(result))
    return Path(path)


def _read_json(path: str | Path, kind: str) -> Any:
    from edgeopt.safe_io import read_json

    return read_json(path, what=f"{kind}file", expect=None)


def load(path: str | Path) -> dict[str, Any]:
    """A baseline document, or BadInput naming the file and what is wrong with it."""
    return _checked(_read_json(path, "baseline "), path)


def _checked(doc: Any, path: str | Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION or "metrics" not in doc:
        raise BadInput(f"{path}: schema_version {doc.get('schema_version') if isinstance(doc, dict) else None!r} "
                       f"is not a baseline of schema_version {SCHEMA_VERSION}")
    return doc


def _stage_result(manifest: Manifest, name: str) -> dict | None:
    return next((stage.get("result") for stage in manifest.stages if stage.get("name") == name), None)


def device_document(folder: Path) -> dict[str, Any]:
    """The baseline document of a build folder that run_on_device.py built, validated and timed on
    the device (device_results.json): the engine's accuracy and host latency under int8."""
    results = json.loads((folder / LAYOUT.device_results).read_text())
    manifest = typed_manifest(folder, read_manifest(folder))
    accuracy, timing = results["accuracy"], results["timing"]
    host = timing["host_latency"]
    latency = {"p50": host["median"], **{k: host[k] for k in ("p90", "p95", "p99", "mean", "min", "max") if k in host}}
    return {"schema_version": SCHEMA_VERSION, "model": manifest.model.get("name") or folder.name, "target": manifest.target["name"],
            "metrics": {"fp32": {"accuracy": accuracy.get("fp32_accuracy")},
                        "int8": {"accuracy": accuracy.get("engine_accuracy"), "agreement": accuracy.get("top1_agreement"),
                                 "cosine_mean": accuracy.get("cosine_mean"), "latency_ms": latency}},
            "samples_ms": {"int8": timing["samples_ms"]} if timing.get("samples_ms") else {},
            "gates": manifest.gates, "quantization": _stage_result(manifest, "quantize"),
            "environment": {"machine": "device", "tensorrt": results["device"]["tensorrt"],
                            "gpu": f"sm {results['device']['compute_capability']}", "threads": None}}


def build_document(folder: Path) -> dict[str, Any]:
    """The baseline document of a build folder as `edgeopt build` wrote it (manifest.json and
    metrics.json, latency.json's raw samples when present): what its `--json` output would give."""
    from edgeopt.safe_io import read_json

    manifest = typed_manifest(folder, read_manifest(folder))
    metrics = read_json(folder / LAYOUT.metrics, what="metrics file", expect=dict)
    if not isinstance(metrics.get("fp32"), dict) or not isinstance(metrics.get("int8"), dict):
        raise BadInput(f"{folder / LAYOUT.metrics}: no fp32 and int8 metrics (is this an edgeopt build?)")
    return document({"model": {"name": manifest.model.get("name") or folder.name}, "target": {"name": manifest.target.get("name")},
                     "metrics": metrics, "gates": manifest.gates, "quantization": _stage_result(manifest, "quantize"),
                     "build_dir": str(folder)})


def _folder_documents(folder: Path) -> list[dict[str, Any]]:
    """A device-measured folder (device_results.json + manifest.json: a build or an extracted
    package run_on_device.py ran in), a build folder (manifest.json + metrics.json), or a release
    folder (release.py's builds/<model>/<target>/, one document per pair)."""
    has = {name: (folder / name).is_file() for name in (LAYOUT.manifest, LAYOUT.metrics, LAYOUT.device_results)}
    try:
        if has[LAYOUT.device_results] and has[LAYOUT.manifest]:
            return [device_document(folder)]
        if has[LAYOUT.manifest] and has[LAYOUT.metrics]:
            return [build_document(folder)]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise BadInput(f"{folder}: not written by edgeopt build or run_on_device.py ({error!r})") from None
    if has[LAYOUT.manifest]:
        raise BadInput(f"{folder}: a build folder without {LAYOUT.metrics} and without {LAYOUT.device_results} "
                       "(an unfinished build, or a package not yet run on the device)")
    pairs = sorted(p.parent for p in folder.glob(f"{LAYOUT.release_builds}/*/*/{LAYOUT.manifest}"))
    if not pairs:
        raise BadInput(f"{folder}: no {LAYOUT.manifest} (a build folder), {LAYOUT.device_results} (run_on_device.py "
                       f"writes it on the device) or {LAYOUT.release_builds}/<model>/<target>/ (a release folder) here")
    return [document for pair in pairs for document in _folder_documents(pair)]


def load_all(path: str | Path) -> list[dict[str, Any]]:
    """Every baseline document `path` holds: one for a baseline file, the output of `edgeopt build
    --json`, a build folder or a device-measured one (or its device_results.json); one per pair
    for a release folder."""
    path = Path(path)
    if path.is_dir():
        return _folder_documents(path)
    if path.name == LAYOUT.device_results:
        return _folder_documents(path.parent)[:1]
    doc = _read_json(path, "")
    if isinstance(doc, dict) and "status" in doc and "metrics" in doc and "model" in doc:
        return [document(doc)]
    return [_checked(doc, path)]


def load_any(path: str | Path) -> dict[str, Any]:
    """The one baseline document at `path` (load_all; a release folder of one pair counts)."""
    documents = load_all(path)
    if len(documents) != 1:
        raise BadInput(f"{path}: holds {len(documents)} (model, target) pairs; compare it with another release folder")
    return documents[0]


def _pair(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["model"], doc["target"]


def paired(baseline: str | Path, current: str | Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(baseline, current) documents to compare: one with one as given (the caller named both);
    otherwise every current (model, target) pair with the baseline's same pair (a release folder)."""
    baselines, currents = load_all(baseline), load_all(current)
    if len(baselines) == len(currents) == 1:
        return [(baselines[0], currents[0])]
    by_pair = {_pair(doc): doc for doc in baselines}
    missing = [f"{m}/{t}" for m, t in map(_pair, currents) if (m, t) not in by_pair]
    if missing:
        raise BadInput(f"{baseline}: no baseline for {', '.join(missing)} (it has {', '.join(f'{m}/{t}' for m, t in by_pair) or 'none'})")
    return [(by_pair[_pair(doc)], doc) for doc in currents]


def judge(result: dict, baseline_path: str | Path, tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Compare a build result with a stored baseline: one comparison with a verdict per metric."""
    tolerances = tolerances or {}
    return comparing.compare(load(baseline_path), document(result),
                             latency_tolerance=tolerances.get("latency", LATENCY_TOLERANCE),
                             accuracy_tolerance=tolerances.get("accuracy", ACCURACY_TOLERANCE))


def judge_build(result: dict, baseline_path: str | Path | None = None, save_path: str | Path | None = None,
                tolerances: dict[str, float] | None = None) -> dict[str, Any] | None:
    """`edgeopt build --baseline/--save-baseline` in the library: adds `not_judged` and (with a
    baseline) `baseline_comparison` to the `--json` result, stores it as a baseline where asked, and
    returns the full comparison (None without a baseline)."""
    result["not_judged"] = judging.not_judged(result["gates"])
    comparison = None
    if baseline_path is not None:
        comparison = judge(result, baseline_path, tolerances)
        result["baseline_comparison"] = {**{k: v for k, v in comparison.items() if k != "sensitivity"},  # no raw samples
                                         "rows": [{k: v for k, v in r.items() if k != "samples"} for r in comparison["rows"]]}
    if save_path is not None:
        save(result, save_path)
    return comparison


def build_failed(result: dict, comparison: dict | None, strict: bool) -> bool:
    """Exit 1 for `edgeopt build`: not ok, a failed gate (strict: one not judged too), or a regression."""
    return (result["status"] != "ok" or judging.failed(result["gates"], strict)
            or (comparison is not None and comparison["verdict"] == "regressed"))

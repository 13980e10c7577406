"""The end of a build: the build directory (written atomically, via BuildLayout) and the typed
result that `edgeopt.build()` returns and `--json` prints."""

from __future__ import annotations

import re
from pathlib import Path

from edgeopt import build_dir as layout_io
from edgeopt.output_dir import staged_directory
from edgeopt.build_dir import LAYOUT
from edgeopt.hashing import sha256_json
from edgeopt.results import Artifacts, BuildResult, ModelInfo, StageSummary, TargetInfo
from edgeopt.stages.prune import prune_section


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def default_out(options, model_name: str, target_name: str) -> Path:
    """build/<model>/<target>, plus what makes this artifact differ from the default build, so two
    different builds of one model and target never share (and overwrite) a folder: a readable
    prune part, and a 16-hex digest of every other artifact-changing option that is not a default."""
    parts = [target_name]
    if options.prune not in (None, "", "none"):
        parts.append(f"prune{str(options.prune).replace(':', '-')}")
    precision = getattr(options, "precision", None)
    if precision not in (None, "int8"):
        parts.append(precision)
    defaults = type(options)()
    changed = {name: getattr(options, name) for name in (
        "calib", "extra_calib", "eval", "input_shapes", "calib_samples", "calib_method", "max_accuracy_drop", "prune_importance",
        "prune_ignore", "finetune_data", "finetune_steps", "seed", "task", "seq_len", "reader")
        if getattr(options, name) != getattr(defaults, name)}
    if changed:
        parts.append(sha256_json({k: str(v) for k, v in changed.items()})[:16])  # 64 bits: no Olive #1936 collision
    return Path("build") / slug(model_name) / "-".join(parts)


def _precision(metrics, int8: bool = False) -> dict:
    latency = metrics.latency_ms
    body = {"accuracy": metrics.accuracy,
            "latency_ms": {"p50": latency.p50, "p90": latency.p90, "p99": latency.p99} if latency else None}
    if int8:
        body.update({"agreement": metrics.agreement, "cosine_mean": metrics.cosine_mean,
                     "cosine_min": metrics.cosine_min, "max_abs_error": metrics.max_abs_error})
    return body


def write_build(run, gates: list) -> BuildResult:
    """The build directory and the result from the run record (steps.BuildRun): its stage outputs
    and records, what it loaded, compiled and measured; `gates` are the judged gate results."""
    entries, records = run.entries, run.records
    source, target, compiled, metrics, warnings = run.source, run.target, run.compiled, run.metrics, run.warnings
    spec, params, data_uses = run.loaded.spec, run.loaded.params, run.data.uses()
    out = Path(run.out).resolve()
    prune = prune_section(entries["prune"].result, entries["unpruned"].result if "unpruned" in entries else None) \
        if "prune" in entries else None
    with staged_directory(out, force=run.options.force) as staging:
        for entry in entries.values():
            for name in entry.files:
                layout_io.place(entry.path(name), staging / name)
        layout_io.write_json_atomic(staging / LAYOUT.metrics, {"schema_version": layout_io.SCHEMA_VERSION,
                                                               **metrics.model_dump(mode="json")})
        manifest = layout_io.Manifest(**layout_io.new_manifest(), **{
            "model": {"name": spec.name, "source": source.reference, "kind": source.kind, "sha256": source.sha256,
                      "params": params, "spec": spec.model_dump(mode="json")},
            "target": {**target.model_dump(mode="json"), "sha256": target.sha256()},
            "data": data_uses,
            "stages": [r.model_dump(mode="json") for r in records],
            "artifacts": [layout_io.describe_artifact(p, staging) for p in sorted(staging.rglob("*")) if p.is_file()],
            "metrics": metrics.model_dump(mode="json"),
            "gates": [g.model_dump() for g in gates],
            "engine": compiled.engine.model_dump(mode="json"),  # names relative to the build directory
            "deployable": compiled.deployable,
            "warnings": warnings,
            "prune": prune,
        })
        layout_io.write_json_atomic(staging / LAYOUT.manifest, manifest.document())
    quantization = entries["quantize"].result if "quantize" in entries else None
    return BuildResult(
        status="gate_failed" if any(g.passed is False for g in gates) else "ok",
        model=ModelInfo(name=spec.name, source=source.reference, sha256=source.sha256,
                        params=prune["after"]["params"] if prune else params, params_before_prune=params),
        target=TargetInfo(name=target.name, backend=target.backend),
        build_dir=str(out),
        artifacts=Artifacts(onnx_fp32=str(out / LAYOUT.fp32_onnx),
                            onnx_int8=str(out / LAYOUT.int8_onnx) if (out / LAYOUT.int8_onnx).is_file() else None,
                            deployable=str(out / compiled.deployable) if compiled.deployable else None),
        metrics={"fp32": _precision(metrics.fp32), "int8": _precision(metrics.int8, int8=True),
                 "samples": metrics.samples, "latency_measured_on": metrics.latency_measured_on,
                 "latency_note": metrics.latency_note,
                 "outputs": [o.model_dump() for o in metrics.outputs], "judged_by": metrics.drop_how},
        engine=compiled.engine.absolute(out),
        stages=[StageSummary(name=r.name, seconds=r.seconds, cached=r.cached) for r in records],
        gates=gates, data=data_uses, warnings=warnings, prune=prune, quantization=quantization,
        manifest=str(out / LAYOUT.manifest),
    )

"""`edgeopt feedback --rebuild`: the same model and target built again with field samples in
the calibration set, and the report's before/after on held-out field data and on the original
evaluation data.

The field samples go in as a second calibration source (`edgeopt build --calib A --calib B`):
at most a quarter of the calibration sample (data/build_data.py), a deterministic sample of at
most 64 field samples written as model-input tensors (token ids, resized and normalized images:
never the source texts or photos) to OUT/field_calib.npz. Field samples used for calibration are
left out of the field before/after, which is judged on the rest (all of it, said so, when none
is left).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgeopt.build_dir import LAYOUT, write_bytes_atomic
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.field.feedback import Build, fidelity, observe, read_field, tensor_rows, Thresholds
from edgeopt.report.compare import ACCURACY_TOLERANCE, LATENCY_TOLERANCE, accuracy_verdict

FIELD_CALIB = "field_calib.npz"  # in the feedback --out folder, never in a build or a package
REBUILT = "rebuilt"


def split(data: Dataset, count: int, seed: int = 0) -> tuple[Dataset, Dataset, bool]:
    """(calibration share, held-out rest, whether the rest is really held out)."""
    if len(data) <= count:
        return data, data, False
    rows = np.random.default_rng(seed).permutation(len(data))
    pick, rest = np.sort(rows[:count]), np.sort(rows[count:])
    take = lambda r: Dataset({k: v[r] for k, v in data.inputs.items()},  # noqa: E731
                             data.labels[r] if data.labels is not None else None, data.source)
    return take(pick), take(rest), True


def options(build: Build, field_npz: Path, out: Path) -> dict:
    """The original build's options as far as its manifest records them, plus the field source."""
    m = build.manifest
    data = m.get("data") or {}
    if "calibration" not in data:
        raise BadInput(f"{build.folder / LAYOUT.manifest}: no calibration data recorded; cannot rebuild")
    quantize = next((s for s in m.get("stages", []) if s.get("name") == "quantize"), {})
    method = ((quantize.get("params") or {}).get("config") or {}).get("method", "minmax")
    fields = {"model": m["model"]["source"], "target": build.target.name, "calib": Path(data["calibration"]["path"]),
              "extra_calib": (field_npz,), "eval": Path(data["evaluation"]["path"]) if "evaluation" in data else None,
              "out": out, "calib_samples": data["calibration"]["samples"], "calib_method": method}
    if m["model"].get("kind") == "huggingface":
        fields["seq_len"] = build.spec.inputs[0].shape[1]
    elif m["model"].get("kind") in ("factory", "module"):
        fields["model"] = m["model"]["source"]
    return fields


def _rows_between(before: list[dict], after: list[dict]) -> list[dict]:
    """Per output: cosine to FP32 and the task metric, before (baseline) vs after (current)."""
    rows, after_by = [], {o["name"]: o for o in after}
    for b in before:
        a = after_by.get(b["name"])
        if a is None:
            continue
        pairs = [(f"cosine_to_fp32 {b['name']}", b["cosine_mean"], a["cosine_mean"])]
        if b.get("metric") and b.get("candidate") is not None and a.get("candidate") is not None:
            pairs.append((f"{b['metric']} {b['name']}".replace("top-1 accuracy", "accuracy"), b["candidate"], a["candidate"]))
        for metric, x, y in pairs:
            rows.append({"metric": metric, "kind": "accuracy", "baseline": x, "current": y, "delta": y - x,
                         "verdict": accuracy_verdict(y - x, ACCURACY_TOLERANCE)})
    return rows


def _comparison(name: str, rows: list[dict], notes: list[str]) -> dict:
    verdicts = [r["verdict"] for r in rows]
    verdict = "regressed" if "regressed" in verdicts else "improved" if "improved" in verdicts else "unchanged"
    return {"name": name, "verdict": verdict, "rows": rows, "environment_warnings": notes,
            "tolerances": {"latency": LATENCY_TOLERANCE, "accuracy": ACCURACY_TOLERANCE}, "sensitivity": None}


def rebuild(doc: dict, out: Path, field_samples: int = 64) -> dict:
    """Build with field samples in calibration; add the before/after comparisons to `doc`."""
    from edgeopt import api
    from edgeopt.ownership import check_may_write

    f = doc["field"]
    before = Build.read(Path(f["build_dir"]))
    data = read_field(before, Path(f["data"]))
    if isinstance(data, dict):
        raise BadInput(f"{f['data']}: --rebuild needs field samples (a capture folder or data), not a field_stats.json")
    calib, rest, held_out = split(data, min(field_samples, 64))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_may_write(out, [FIELD_CALIB], "report", "--out")
    buffer = io.BytesIO()
    np.savez(buffer, **calib.inputs)  # model inputs only: token ids, resized tensors; no labels, no source files
    write_bytes_atomic(out / FIELD_CALIB, buffer.getvalue())
    result = api.build(**options(before, out / FIELD_CALIB, out / REBUILT))
    after = Build.read(Path(result.build_dir))
    limits = Thresholds(**{k: f["thresholds"][g] for k, g in (("saturation", "max_field_saturation"),
                                                               ("psi", "max_field_psi"), ("accuracy_drop", "max_accuracy_drop"))})
    note = [] if held_out else [f"all {len(data)} field samples were also calibration samples: the field 'after' is in-sample"]
    field_before, field_after = fidelity(before, rest), fidelity(after, rest)
    alerts = [sum(r["verdict"] == "regressed" for r in tensor_rows(b, observe(b, rest), limits)) for b in (before, after)]
    field_rows = _rows_between(field_before["outputs"], field_after["outputs"]) + [
        {"metric": "tensor alerts", "kind": "field", "baseline": alerts[0], "current": alerts[1],
         "verdict": "improved" if alerts[1] < alerts[0] else "regressed" if alerts[1] > alerts[0] else "unchanged",
         "reason": "saturation or PSI over threshold, each build against its own calibration"}]
    eval_rows = _rows_between((before.manifest.get("metrics") or {}).get("outputs") or [],
                              (after.manifest.get("metrics") or {}).get("outputs") or [])
    doc["comparisons"] += [
        _comparison(f"field data held out from recalibration ({len(rest)} samples): before -> after", field_rows, note),
        _comparison("original evaluation data: before -> after", eval_rows, [])]
    f.setdefault("notes", []).append(f"rebuilt with {len(calib)} field samples in calibration ({out / FIELD_CALIB}): "
                                     f"{result.build_dir}")
    f["rebuild"] = {"build_dir": result.build_dir, "field_calibration_samples": len(calib), "held_out_samples": len(rest),
                    "field_before": field_before, "field_after": field_after}
    return doc

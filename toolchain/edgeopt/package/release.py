"""Markdown reports for release bundles: one build (report.md inside a package) and one release
over many (model, target) pairs (the summary CI posts to $GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

from edgeopt.build_dir import Manifest


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "not judged"}[passed]


def render_package(manifest: dict) -> str:
    """report.md of one package, from the build's manifest."""
    model, target = manifest["model"], manifest["target"]
    typed = Manifest.of(manifest)
    metrics, engine = typed.metrics or {}, typed.engine
    fp32, int8 = metrics.get("fp32") or {}, metrics.get("int8") or {}
    lines = [f"# {model['name']} -> {target['name']} ({target.get('backend', '?')})", "",
             f"edgeopt {manifest.get('edgeopt', '?')}; model sha256 `{model.get('sha256', '?')}`", "",
             "| metric | FP32 | INT8 |", "|---|---|---|",
             f"| accuracy | {_pct(fp32.get('accuracy'))} | {_pct(int8.get('accuracy'))} |",
             f"| agreement with FP32 | | {_pct(int8.get('agreement'))} |"]
    for precision, body in (("FP32", fp32), ("INT8", int8)):
        latency = body.get("latency_ms")
        if latency:
            lines.append(f"| latency p50 ({precision}) | {latency['p50']:.3f} ms | |" if precision == "FP32"
                         else f"| latency p50 ({precision}) | | {latency['p50']:.3f} ms |")
    if metrics.get("latency_note"):
        lines += ["", f"Latency: {metrics['latency_note']}"]
    lines += ["", "| gate | value | threshold | verdict |", "|---|---|---|---|"]
    for gate in manifest.get("gates", []):
        value = "n/a" if gate.get("value") is None else f"{gate['value']:.4g}"
        lines.append(f"| {gate['name']} | {value} | {gate['threshold']:.4g} | {_verdict(gate.get('passed'))} |")
    if engine.get("status") and engine["status"] != "not_applicable":
        lines += ["", f"TensorRT engine: {engine['status']}" + (f" ({engine['reason']})" if engine.get("reason") else "")]
        if engine.get("status") == "deferred":
            lines.append("On the device, inside the extracted package: `sh run_on_device.sh`")
    return "\n".join(lines) + "\n"


def render_release(rows: list[dict]) -> str:
    """The summary over every (model, target) pair of a release; rows come from release.run()."""
    failed = sum(1 for r in rows if r["status"] != "ok")
    lines = ["# edgeopt release", "",
             f"{len(rows)} builds, {failed} failed" if failed else f"{len(rows)} builds, all gates passed", "",
             "| model | target | status | gates | INT8 accuracy | accuracy drop | INT8 p50 | engine | package |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        gates = {g["name"]: g for g in row.get("gates", [])}
        drop = gates.get("max_accuracy_drop", {}).get("value")
        latency = (row.get("int8") or {}).get("latency_ms")
        verdicts = ", ".join(f"{g['name']} {_verdict(g.get('passed'))}" for g in row.get("gates", [])) or "-"
        cells = [row["model"], row["target"], row["status"] if row["status"] == "ok" else f"**{row['status']}**", verdicts,
                 _pct((row.get("int8") or {}).get("accuracy")), "n/a" if drop is None else f"{drop * 100:.2f} pts",
                 f"{latency['p50']:.3f} ms" if latency else "n/a", row.get("engine") or "n/a",
                 f"`{row['package']}`" if row.get("package") else (row.get("error") or "-")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"

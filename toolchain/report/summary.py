"""The short human summary `edgeopt build` ends with, rendered from the `--json` document."""

from __future__ import annotations


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _ms(latency: dict | None) -> str:
    return "n/a" if not latency else f"p50 {latency['p50']:.3f} ms  p90 {latency['p90']:.3f}  p99 {latency['p99']:.3f}"


def render_build(result: dict) -> str:
    model, target, metrics = result["model"], result["target"], result["metrics"]
    fp32, int8 = metrics["fp32"], metrics["int8"]
    lines = [f"edgeopt build: {model['name']} -> {target['name']} ({target['backend']})", "", "  stage      seconds  cached"]
    for stage in result["stages"]:
        lines.append(f"  {stage['name']:<10} {stage['seconds']:>7.2f}  {'yes' if stage['cached'] else 'no'}")
    lines.append("")
    lines.append(f"  accuracy   FP32 {_percent(fp32['accuracy'])}   INT8 {_percent(int8['accuracy'])}   "
                 f"agreement {_percent(int8['agreement'])}")
    if fp32["latency_ms"] or int8["latency_ms"]:
        lines.append(f"  latency    FP32 {_ms(fp32['latency_ms'])}")
        lines.append(f"             INT8 {_ms(int8['latency_ms'])}")
    else:
        lines.append(f"  latency    {metrics.get('latency_note') or 'not measured'}")
    if fp32["latency_ms"] and int8["latency_ms"]:
        lines.append(f"  speedup    {fp32['latency_ms']['p50'] / int8['latency_ms']['p50']:.2f}x (INT8 vs FP32, p50, same run)")
    for gate in result["gates"]:
        verdict = {True: "pass", False: "FAIL", None: "not judged"}[gate["passed"]]
        value = "n/a" if gate["value"] is None else f"{gate['value']:.4g}"
        lines.append(f"  gate       {gate['name']}: {value} vs {gate['threshold']:.4g} -> {verdict}")
    for warning in result.get("warnings", []):
        lines.append(f"  warning    {warning}")
    lines.append("")
    lines.append(f"  build dir  {result['build_dir']}")
    if result["artifacts"]["deployable"]:
        lines.append(f"  deploy     {result['artifacts']['deployable']}")
    engine = result["engine"]
    if engine["status"] == "deferred":
        lines.append(f"  engine     {engine.get('reason') or 'deferred'}")
        lines.append(f"  plan       {engine['plan']}")
        lines.append("  on the device, run one of:")
        lines.append(f"    edgeopt engine build {result['build_dir']}")
        lines.append(f"    {engine['trtexec']}")
    elif engine["status"] == "built":
        lines.append(f"  engine     built: {engine.get('engine')}")
    return "\n".join(lines)

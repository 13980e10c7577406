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
    if int8["agreement"] is None and int8.get("cosine_mean") is not None:  # embeddings, regression
        lines.append(f"  fidelity   INT8 vs FP32 cosine mean {int8['cosine_mean']:.6f}  min {int8['cosine_min']:.6f}")
    else:
        lines.append(f"  accuracy   FP32 {_percent(fp32['accuracy'])}   INT8 {_percent(int8['accuracy'])}   "
                     f"agreement {_percent(int8['agreement'])}")
    if metrics.get("batch"):
        lines[-1] += f"   ({metrics['samples']} samples at batch {metrics['batch']}, as deployed)"
    outputs = metrics.get("outputs") or []
    for row in outputs if len(outputs) > 1 or (outputs and outputs[0]["kind"] not in ("class_scores", "embedding")) else []:
        judged = f"  {row['metric']} {row['candidate']:.4f} (FP32 {row['fp32']:.4f})" if row.get("metric") else ""
        lines.append(f"  output     {row['name']} [{row['kind']}]: cosine {row['cosine_mean']:.6f}  "
                     f"rel L2 {row['relative_l2']:.4g}  max abs {row['max_abs_error']:.4g}{judged}")
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
        why = f" ({gate['note']})" if gate["passed"] is None and gate.get("note") else ""
        if gate.get("interval"):
            low, high = gate["interval"]
            why += f" (95% interval {low:.4g} to {high:.4g}{'; within noise of the budget' if gate['within_noise'] else ''})"
        lines.append(f"  gate       {gate['name']}: {value} vs {gate['threshold']:.4g} -> {verdict}{why}")
    skipped = [g["name"] for g in result["gates"] if g["passed"] is None]
    if skipped:
        lines.append(f"  not judged {', '.join(skipped)} (passes unless --strict)")
    slower = int8_slower(result)
    if slower:
        lines.append(f"  warning    {slower}")
    lines.extend(_quantization(result.get("quantization")))
    lines.extend(_pruning(result.get("prune")))
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


def int8_slower(result: dict) -> str | None:
    """The INT8 artifact is slower than FP32 on this host: worth a word even when every gate passes."""
    fp32, int8 = result["metrics"]["fp32"]["latency_ms"], result["metrics"]["int8"]["latency_ms"]
    if fp32 and int8 and int8["p50"] > fp32["p50"]:
        return (f"INT8 is slower than FP32 on this host: speedup {fp32['p50'] / int8['p50']:.2f}x (p50 "
                f"{int8['p50']:.3f} vs {fp32['p50']:.3f} ms); check for float fallbacks and the CPU's int8 support")
    return None


def _quantization(quant: dict | None) -> list[str]:
    """The recipe the quantize stage chose, and the per-layer table when layers stayed in float."""
    if not quant:
        return []
    lines = [f"  int8       {quant['choice']}; calibration {quant['calibration_seconds']:.2f} s "
             f"on {quant['calibration_samples']} samples ({quant['method']})"]
    fallback = quant.get("fallback")
    if fallback:
        kept = "best float set kept" if fallback["float_layers"] else "all-INT8 kept"
        verdict = "met" if fallback["met"] else f"NOT met ({kept})"
        lines.append(f"  fallback   budget {fallback['budget']:.4g}: drop {fallback['drop_before']:.4g} -> "
                     f"{fallback['drop_after']:.4g}, {verdict}; float layers: {', '.join(fallback['float_layers']) or 'none'}")
        leave_one_out = fallback.get("ranking", "leave-one-out") == "leave-one-out"
        lines.append("    rank  layer                                    op       " +
                     ("drop if float  saved   float" if leave_one_out else "added error    float"))
        for row in fallback["layers"][:20]:
            value = (f"{row['drop_if_float']:>13.4f}  {row['saved']:>6.4f}" if leave_one_out
                     else f"{row.get('added_error') or 0:>11.4f}  ")
            lines.append(f"    {row['rank']:>4}  {row['node'][:40]:<40} {row['op_type']:<8} {value}"
                         f"  {'yes' if row['kept_float'] else 'no'}")
    return lines


def _pruning(prune: dict | None) -> list[str]:
    """Before/after pruning: size, MACs, accuracy (FP32, with and without recovery), host latency."""
    if not prune:
        return []
    before, after = prune["before"], prune["after"]
    how = (f"channels {prune['ratio']:g} ({prune['importance']}, multiples of {prune['channel_multiple']})"
           if prune["mode"] == "channels" else f"2:4 sparsity on {len(prune['sparse_layers'])} layers")
    kept = (f"; head {prune['head']} keeps its outputs" if prune["head"] else "") + (
        f"; untouched: {', '.join(prune['ignored'])}" if prune["ignored"] else "")
    lines = [f"  prune      {how}{kept}",
             f"             params {before['params']:,} -> {after['params']:,} (nonzero {after['nonzero_params']:,}, "
             f"-{prune['nonzero_removed'] * 100:.1f}%)   MACs {before['macs'] / 1e6:.1f} M -> {after['macs'] / 1e6:.1f} M   "
             f"FP32 MB {before['bytes'] / 1e6:.2f} -> {after['bytes'] / 1e6:.2f}"]
    if before["accuracy"] is not None:
        recovery = prune["recovery"]
        steps = f" -> {_percent(after['accuracy'])} after {recovery['steps']} recovery steps" if recovery else ""
        lines.append(f"             accuracy FP32 {_percent(before['accuracy'])} -> {_percent(prune['accuracy_pruned'])} "
                     f"pruned{steps}; cost {prune['accuracy_cost'] * 100:.2f} points")
    if before["latency_ms"] and after["latency_ms"]:
        lines.append(f"             latency FP32 p50 {before['latency_ms']['p50']:.3f} -> {after['latency_ms']['p50']:.3f} ms "
                     f"({prune['latency_speedup']:.2f}x, host, batch 1, same run)")
    return lines

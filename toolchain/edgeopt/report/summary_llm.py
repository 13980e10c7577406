"""The human summary of a decoder-only LLM build (issue 18): fidelity vs FP32, speed as deployed,
memory fit, and how the 4-bit weights were made."""

from __future__ import annotations


def _f(value, fmt: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def render_llm(result: dict) -> str:
    llm = result["metrics"]["llm"]
    fit = llm["memory_fit"]
    lines = [f"edgeopt build: {result['model']['name']} -> {result['target']['name']} ({result['target']['backend']}, "
             f"text generation, {llm['precision']})", "", "  stage          seconds"]
    lines += [f"  {s['name']:<14} {s['seconds']:>7.2f}" for s in result["stages"]]
    lines += ["",
              f"  perplexity     FP32 {_f(llm['perplexity_fp32'])}   {llm['precision']} {_f(llm['perplexity'])}   "
              f"increase {_f(llm['perplexity_increase'] * 100, '+.2f', '%')}   KL {_f(llm['kl_mean'], '.4f')}   "
              f"({llm['eval_tokens']} tokens, {llm['windows']} windows of {llm['window']})",
              f"  agreement      {_f(llm['agreement'] * 100, '.1f', '%')} of {llm['new_tokens']} greedy tokens over "
              f"{llm['prompts']} prompts equal FP32's",
              f"  speed          TTFT {_f(llm['ttft_ms'], '.1f', ' ms')} ({llm['prompt_tokens']}-token prompt)   decode "
              f"{_f(llm['decode_tokens_per_s'], '.1f', ' tok/s')}   {llm['threads']} threads (onnxruntime-genai)",
              f"  size           {llm['model_mb']:.1f} MB ({llm['precision']})",
              f"  memory fit     weights {fit['weights_mb']:.0f} MB + KV cache {fit['kv_cache_mb']:.0f} MB at {fit['context']} "
              f"tokens + runtime {fit['overhead_mb']:.0f} MB = {fit['need_mb']:.0f} MB of {fit['device_mb']:.0f} MB",
              f"  parity         export vs torch: max logit diff {llm['parity']['max_abs_logit_diff']:.2g}, greedy equal "
              f"{llm['parity']['greedy_equal']}"]
    task = llm.get("task")
    if task:
        lines.append(f"  task           {task['metric']} over {task['tasks']} prompts: FP32 {task['fp32']:.4g}, "
                     f"{llm['precision']} {task['value']:.4g} (drop {task['drop']:+.4g})")
    device = llm.get("device")
    if device:
        mem = device["memory"]
        lines.append(f"  device         {device['runtime']} at {device['precision']}: run {mem['run_mb']:.0f} MB (weights "
                     f"{mem['weights_mb']:.0f} + KV {mem['kv_cache_mb']:.0f} at {mem['kv_capacity']} tokens + runtime "
                     f"{mem['runtime_mb']}), engine build {mem['build_mb']:.0f} MB, of {mem['usable_mb']:.0f} MB usable; "
                     f"host figures above are {'the same weights' if device['same_weights_as_host'] else 'a proxy'}")
        lines.append(f"  engine         deferred: {result['engine'].get('reason')}")
    for row in llm["candidates"]:
        lines.append(f"  candidate      {row['precision']}: {row['mb']:.1f} MB, calibration perplexity "
                     f"{row['calib_perplexity']:.2f} ({row['calib_increase'] * 100:+.2f}%)")
    if llm.get("gguf_blocks"):
        lines.append(f"  gguf           {llm['gguf_blocks']}")
    for gate in result["gates"]:
        verdict = {True: "pass", False: "FAIL", None: "not judged"}[gate["passed"]]
        lines.append(f"  gate           {gate['name']}: {_f(gate['value'], '.4g')} vs {gate['threshold']:.4g} -> {verdict}")
    opened = "(og.Model(folder))" if not device else f"(plan: {result['engine'].get('plan')})"
    lines.append(f"  deployable     {result['artifacts']['deployable']} {opened}")
    lines += [f"  warning        {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)

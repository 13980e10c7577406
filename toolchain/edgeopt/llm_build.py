"""`edgeopt build` for decoder-only LLMs (issue 18): source -> float folder -> FP32 ONNX with KV cache
(parity with torch) -> weight-only INT4/INT8 (MatMulNBits) chosen on the calibration split ->
onnxruntime-genai folder -> validation on the eval split as deployed -> the build directory.

Kept apart from pipeline.py on purpose (that module is being refactored): the pipeline calls
`build()` at one marked dispatch point when `models.causal_lm.is_causal_lm` says so. Selection
rule, as for INT8 today: the calibration texts pick the precision (the smallest whose perplexity
increase stays under the gate), the eval texts then judge it; the two never mix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeopt import host, targets
from edgeopt.build_dir import LAYOUT, describe_artifact, new_manifest, place
from edgeopt.output_dir import check_output_locations, staged_directory
from edgeopt.cache import CacheEntry, StageCache, cache_key
from edgeopt.errors import BadInput
from edgeopt.hashing import sha256_file, sha256_json, sha256_tree
from edgeopt import llm_device
from edgeopt.backends.tensorrt import edge_llm
from edgeopt.data.llm_texts import read_tasks, read_texts
from edgeopt.metrics.outputs import load_user_metric
from edgeopt.models import causal_lm
from edgeopt.report.gates import GateResult
from edgeopt.results import Artifacts, BuildResult, EngineSummary, ModelInfo, StageSummary, TargetInfo

RUNTIME_OVERHEAD_BYTES = 300 * 2**20  # ONNX Runtime + genai arenas and activations, measured ~250 MB on 135M
WINDOW, WINDOWS, PROMPTS, PROMPT_LEN, NEW_TOKENS = 256, 8, 8, 64, 32
TASK_EXTRA_TOKENS = 8  # a task's greedy answer may run this far past the reference answer's length


def memory_fit(facts: dict, weight_bytes: int, context: int, device_gb: float) -> dict:
    """Weights + KV cache (fp32, at `context` tokens) + runtime overhead vs the device's memory."""
    kv = 2 * facts["num_layers"] * facts["num_kv_heads"] * facts["head_size"] * context * 4
    need = weight_bytes + kv + RUNTIME_OVERHEAD_BYTES
    return {"weights_mb": weight_bytes / 2**20, "kv_cache_mb": kv / 2**20, "overhead_mb": RUNTIME_OVERHEAD_BYTES / 2**20,
            "need_mb": need / 2**20, "device_mb": device_gb * 1024, "fits": need <= device_gb * 2**30, "context": context}


def _onnx_bytes(path: Path) -> int:
    data = path.with_name(path.name + "_data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def build(options, progress=None) -> BuildResult:
    """The LLM build; `options` is pipeline.BuildOptions."""
    progress = progress or (lambda event, stage, details: None)
    target = targets.resolve(options.target, options.targets_dir)
    source = causal_lm.resolve(options.model)
    if target.backend != "onnxruntime":
        if source.kind != "gguf" and not edge_llm.supports(target):
            raise BadInput(f"--target {target.name}: TensorRT Edge-LLM needs a Jetson Orin (SM 8.7) on JetPack 6.2 or "
                           f"later ({target.device.product}: SM {target.device.compute_capability}, JetPack "
                           f"{target.software.jetpack}); give a .gguf for llama.cpp with CUDA, or use an Orin profile")
    out = Path(options.out or Path("build") / source.name / target.name).resolve()
    calib, evaluation = read_texts(options.calib), read_texts(options.eval)
    tasks = read_tasks(options.eval)
    if options.metric and not tasks:
        raise BadInput(f"--metric {options.metric}: an LLM task metric needs --eval as .jsonl rows with \"prompt\" and \"answer\"")
    user_metric = load_user_metric(options.metric) if options.metric else None  # refused before any work
    if not calib:
        raise BadInput("--calib: a text-generation build needs calibration texts (.txt, one per line, or .jsonl)")
    cache = StageCache(options.cache_dir, enabled=options.use_cache)
    check_output_locations(out, cache.root if options.use_cache else None, options.force)
    stages = _Stages(cache, progress)
    try:
        with staged_directory(out, force=options.force) as staging:
            return _build(options, target, source, out, staging, calib, evaluation or calib, stages,
                          eval_is_calib=not evaluation, tasks=(tasks, user_metric))
    finally:
        cache.cleanup()  # --no-cache: this run's scratch folders (the build folder holds copies)


class _Stages:
    """The LLM stages through the content-addressed stage cache, keyed as pipeline.run_stage keys
    (cache.cache_key: name, parameters, input hashes, library versions with edgeopt's own source),
    so a second identical build is served from the cache and a changed input is not."""

    def __init__(self, cache: StageCache, progress):
        self.cache, self.progress, self.records = cache, progress, []
        self.libraries = {**host.library_versions(), "edgeopt": host.edgeopt_fingerprint()}

    def cached(self, name: str, params: dict, inputs: dict, work) -> CacheEntry:
        """work(folder) -> JSON result, with file names relative to `folder`."""
        key = cache_key(name, params, inputs, self.libraries)
        self.progress("start", name, {})
        started = time.perf_counter()
        entry = self.cache.lookup(name, key)
        hit = entry is not None
        if entry is None:
            entry = self.cache.run_and_store(name, key, work)
        self._done(name, started, hit)
        return entry

    def plain(self, name: str, work):
        """A stage that only copies or writes into the build folder: never cached."""
        self.progress("start", name, {})
        started = time.perf_counter()
        value = work()
        self._done(name, started, False)
        return value

    def _done(self, name: str, started: float, hit: bool) -> None:
        self.records.append(StageSummary(name=name, seconds=round(time.perf_counter() - started, 3), cached=hit))
        self.progress("done", name, self.records[-1].model_dump())


def _files(entry: CacheEntry) -> str:
    return sha256_json(entry.files)


def _link_entry(entry: CacheEntry, destination: Path) -> None:
    """The entry's files into the build folder as copies (build_dir.place: an edit of the build
    folder must never reach the cache)."""
    for name in entry.files:
        place(entry.path(name), destination / name)


def _build(options, target, source, out, staging, calib, evaluation, stages, eval_is_calib, tasks) -> BuildResult:
    from edgeopt.backends.onnxruntime import genai
    from edgeopt.metrics import language
    from edgeopt.stages import export_causal_lm, quantize_weight_only as wo

    threads = target.build.threads or 2
    if source.kind == "hf":
        folder, model_hash = source.path, sha256_tree(source.path)
    else:
        inputs = {"source": sha256_tree(source.path), "base": sha256_tree(source.base) if source.base else None}
        loaded = stages.cached("llm_load", {"kind": source.kind}, inputs,
                               lambda work: {"folder": causal_lm.float_folder(source, work).name})
        folder, model_hash = loaded.path(loaded.result["folder"]), _files(loaded)
    facts = causal_lm.model_facts(folder)
    tokenizer = _tokenizer(folder)
    calib_ids, eval_ids = _ids(tokenizer, calib), _ids(tokenizer, evaluation)
    exported = stages.cached("llm_export", {"task": "text-generation-with-past"}, {"model": model_hash},
                             lambda work: {"onnx": export_causal_lm.export(folder, work).name})
    _link_entry(exported, staging / "onnx_fp32")
    fp32 = staging / "onnx_fp32" / exported.result["onnx"]
    parity = stages.cached("llm_parity", {"tokens": PROMPT_LEN}, {"onnx": _files(exported), "ids": sha256_json(calib_ids[:PROMPT_LEN])},
                           lambda work: export_causal_lm.parity(folder, fp32, calib_ids[:PROMPT_LEN])).result
    context = min(facts["context_length"] or 2048, target.build.seq_len.max if target.build.seq_len.max > 128 else 2048)
    fp32_fit = memory_fit(facts, _onnx_bytes(fp32), context, target.device.memory_gb)
    # the profile's gate (targets.Gates.max_perplexity_increase); --max-accuracy-drop overrides it
    gate = target.gates.max_perplexity_increase if options.max_accuracy_drop is None else options.max_accuracy_drop
    calib_windows = language.windows(calib_ids, WINDOW, WINDOWS) or [calib_ids[:WINDOW]]
    calib_hash = sha256_json(calib_windows)

    def calib_perplexity(entry: CacheEntry, path: Path) -> float:
        scored = stages.cached("llm_score", {"window": WINDOW, "threads": threads}, {"onnx": _files(entry), "ids": calib_hash},
                               lambda work: {"perplexity": language.score_windows(genai.CausalSession(path, threads).score,
                                                                                  None, calib_windows)["perplexity"]})
        return scored.result["perplexity"]

    calib_ref = {"perplexity": calib_perplexity(exported, fp32)}
    candidates, chosen, exact = [], None, None
    for bits in ((4, 8) if options.precision != "fp32" else ()):
        keep_gguf = bits == 4 and source.kind == "gguf"  # keep the file's own Q4 blocks: no second rounding
        config = wo.EXACT_GGUF if keep_gguf else wo.WeightOnlyConfig(bits=bits)
        entry = stages.cached(f"llm_quantize_int{bits}", {**config.params(), "gguf_blocks": keep_gguf},
                              {"onnx": _files(exported), "gguf": sha256_tree(source.path) if keep_gguf else None},
                              lambda work, config=config, keep_gguf=keep_gguf: _quantize(wo, fp32, work, config, keep_gguf,
                                                                                         source, facts))
        _link_entry(entry, staging / f"onnx_int{bits}")
        path = staging / f"onnx_int{bits}" / entry.result["onnx"]
        if keep_gguf:
            exact = entry.result["exact"]
        ppl = calib_perplexity(entry, path)
        fit = memory_fit(facts, _onnx_bytes(path), context, target.device.memory_gb)
        row = {"precision": f"int{bits}", "calib_perplexity": ppl, "calib_increase": ppl / calib_ref["perplexity"] - 1,
               "mb": _onnx_bytes(path) / 2**20, "fits": fit["fits"], "path": path, "entry": entry}
        candidates.append(row)
        if chosen is None and row["calib_increase"] <= gate and fit["fits"]:
            chosen = row
    if chosen is None and candidates:
        chosen = min((c for c in candidates if c["fits"]), key=lambda c: c["calib_increase"], default=None)
    device = None
    if target.backend != "onnxruntime":  # the Jetson path: the device's own memory rule picks the precision
        device = llm_device.choose(facts, _params(fp32), target, context, candidates, gate, source, exact)
        chosen = next((c for c in candidates if c["precision"] == device["proxy"]), None)
    deployed = chosen["path"] if chosen else fp32
    fit = memory_fit(facts, _onnx_bytes(deployed), context, target.device.memory_gb)
    if device is None and not fit["fits"]:  # a Jetson's own rule (run and engine build) was applied above
        raise BadInput(f"{source.path}: does not fit {target.name}: weights {fit['weights_mb']:.0f} MB + KV cache "
                       f"{fit['kv_cache_mb']:.0f} MB at {context} tokens + runtime {fit['overhead_mb']:.0f} MB = "
                       f"{fit['need_mb']:.0f} MB > {fit['device_mb']:.0f} MB of device memory")
    deployable = stages.plain("compile", lambda: genai.write_folder(deployed, folder, facts, staging / LAYOUT.genai_dir, threads))
    deployed_entry = chosen["entry"] if chosen else exported
    metrics = stages.cached("llm_validate", {"window": WINDOW, "windows": WINDOWS, "prompts": PROMPTS, "prompt": PROMPT_LEN,
                                             "new_tokens": NEW_TOKENS, "threads": threads},
                            {"fp32": _files(exported), "deployed": _files(deployed_entry), "ids": sha256_json(eval_ids),
                             "genai_config": sha256_file(deployable / genai.CONFIG_NAME)},
                            lambda work: _validate(genai, language, fp32, deployable, deployed, eval_ids, threads)).result
    metrics = dict(metrics)
    if tasks[0]:  # .jsonl prompt/answer: the task metric of FP32 and of the deployed model, greedy as deployed
        generated = stages.cached("llm_tasks", {"extra_tokens": TASK_EXTRA_TOKENS, "threads": threads},
                                  {"fp32": _files(exported), "deployed": _files(deployed_entry), "tasks": sha256_json(tasks[0]),
                                   "genai_config": sha256_file(deployable / genai.CONFIG_NAME)},
                                  lambda work: _generate(genai, fp32, deployable, tokenizer, tasks[0], facts, threads)).result
        metrics["task"] = language.task_scores(generated["fp32"], generated["deployed"], [t["answer"] for t in tasks[0]],
                                               [t["prompt"] for t in tasks[0]], tasks[1], options.metric)
    engine = EngineSummary(status="not_applicable", reason="CPU target: the onnxruntime-genai folder is the deployable")
    if device is not None:
        deployable, engine = stages.plain("plan", lambda: llm_device.write(device, staging, out, folder, target, context, calib,
                                                                evaluation, [tokenizer.decode(p) for p in _prompts(eval_ids)],
                                                                NEW_TOKENS, metrics, source))
        metrics["device"] = {k: v for k, v in device.items() if k != "candidates"} | {"candidates": device["candidates"]}
    metrics.update({"params": _params(fp32), "precision": chosen["precision"] if chosen else "fp32", "parity": parity, "memory_fit": fit,
                    "fp32_memory_fit": fp32_fit, "model_facts": facts, "source_kind": source.kind,
                    "candidates": [{k: v for k, v in c.items() if k not in ("path", "entry")} for c in candidates],
                    "selection": "the smallest precision whose calibration perplexity increase is within the gate",
                    "eval_is_calibration": eval_is_calib,
                    "gguf_blocks": _gguf_note(exact) if source.kind == "gguf" else None, "gguf_exact": exact})
    gates = [GateResult(name="max_perplexity_increase", threshold=gate, value=metrics["perplexity_increase"],
                        passed=metrics["perplexity_increase"] <= gate)]
    floor = target.gates.min_greedy_agreement
    if floor is not None:
        gates.append(GateResult(name="min_greedy_agreement", threshold=floor, value=metrics["agreement"],
                                passed=metrics["agreement"] >= floor))
    if metrics.get("task"):  # the profile's max_accuracy_drop judges the task metric (exact match or --metric)
        drop, limit = metrics["task"]["drop"], target.gates.max_accuracy_drop
        gates.append(GateResult(name="max_task_metric_drop", threshold=limit, value=drop, passed=drop <= limit,
                                note=f"{metrics['task']['metric']}: FP32 {metrics['task']['fp32']:.4g}, deployed {metrics['task']['value']:.4g}"))
    metrics["gates"] = {g.name: {"threshold": g.threshold, "value": g.value, "passed": g.passed} for g in gates}
    (staging / LAYOUT.metrics).write_text(json.dumps({"llm": metrics}, indent=2, default=str) + "\n")
    rel = lambda p: str(out / Path(p).relative_to(staging))  # noqa: E731 - paths as they will be after the rename
    data = _data_uses(options, calib, evaluation, eval_is_calib)
    _write_manifest(staging, out, source, target, stages, gates, engine, deployable, metrics, data)
    return BuildResult(
        status="ok" if all(g.passed for g in gates) else "gate_failed",
        model=ModelInfo(name=source.name, source=str(source.path), sha256=_hash(source.path),
                        params=metrics["params"], params_before_prune=metrics["params"]),
        target=TargetInfo(name=target.name, backend=target.backend), build_dir=str(out),
        artifacts=Artifacts(onnx_fp32=rel(fp32), onnx_int8=rel(deployed) if chosen else None, deployable=rel(deployable)),
        metrics={"fp32": {"accuracy": None, "latency_ms": None}, "int8": {"accuracy": None, "agreement": metrics["agreement"],
                 "cosine_mean": None, "latency_ms": metrics["token_latency_ms"]}, "llm": metrics},
        engine=engine,
        stages=stages.records, gates=gates, manifest=str(out / LAYOUT.manifest),
        warnings=["no --eval texts: validation used the calibration texts"] if eval_is_calib else [])


def _data_uses(options, calib: list[str], evaluation: list[str], eval_is_calib: bool) -> dict:
    """The manifest's `data` block, as data/build_data.BuildData.uses writes it for other builds: which
    text file did what, by hash (the package's provenance names them)."""
    calib_use, eval_use = ["precision choice (calibration perplexity)"], ["reported metrics", "gates"]
    uses = {"calibration": {"path": str(options.calib), "samples": len(calib), "sha256": sha256_file(options.calib),
                            "used_for": calib_use + (eval_use if eval_is_calib else [])}}
    if not eval_is_calib:
        uses["evaluation"] = {"path": str(options.eval), "samples": len(evaluation), "sha256": sha256_file(options.eval),
                              "used_for": eval_use}
    return uses


def _write_manifest(staging, out, source, target, stages, gates, engine, deployable: Path, metrics: dict,
                    data: dict) -> None:
    """manifest.json with the keys `edgeopt package`/`verify` read (build_dir.Manifest): the target as
    built, every file of the deployable folder (and metrics.json) with its sha256, gates, engine."""
    files = sorted(p for p in deployable.rglob("*") if p.is_file()) + [staging / LAYOUT.metrics]
    manifest = {**new_manifest(), "kind": "causal-lm",
                "model": {"name": source.name, "source": str(source.path), "kind": source.kind, "sha256": _hash(source.path)},
                "target": {**target.model_dump(mode="json"), "sha256": target.sha256()}, "data": data,
                "stages": [s.model_dump() for s in stages.records],
                "artifacts": [describe_artifact(p, staging) for p in files],
                "gates": [g.model_dump(mode="json") for g in gates],
                "engine": engine.model_copy(update={"plan": engine.plan and str(Path(engine.plan).relative_to(out))}).model_dump(mode="json"),
                "deployable": str(deployable.relative_to(staging)), "metrics": {"llm": metrics}}
    (staging / LAYOUT.manifest).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def _gguf_note(exact: dict | None) -> str:
    if not exact:
        return "the GGUF's blocks were not reused (no INT4 candidate)"
    return (f"INT4 keeps the GGUF's own 4-bit blocks exactly in {exact['exact_gguf_matrices']} matrices "
            f"(MatMulNBits block 32, uint8 zero points + a per-block residual correction for Q4_1, fp32 compute); "
            f"{exact['requantized_matrices']} re-quantized by round to nearest")


def _hash(path: Path) -> str:
    return sha256_file(path) if path.is_file() else sha256_tree(path)


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer  # heavy-ish: native library

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def _ids(tokenizer, texts: list[str]) -> list[int]:
    return tokenizer.encode("\n".join(texts), add_special_tokens=False).ids


def _quantize(wo, fp32: Path, work: Path, config, keep_gguf: bool, source, facts: dict) -> dict:
    path = wo.quantize(fp32, work / LAYOUT.causal_lm_onnx, config)
    exact = None
    if keep_gguf:
        from edgeopt.models import gguf  # reads the GGUF's blocks (gguf package), GGUF sources only

        exact = gguf.apply_blocks(path, source.path, facts["num_heads"], facts["num_kv_heads"], facts["model_type"])
    return {"onnx": path.name, "exact": exact}


def _generate(genai, fp32: Path, deployable: Path, tokenizer, tasks: list[dict], facts: dict, threads: int) -> dict:
    """Greedy answers of FP32 (ONNX Runtime, KV cache) and of the deployable (onnxruntime-genai), each
    up to the reference answer's length + TASK_EXTRA_TOKENS, cut at the end-of-sequence token."""
    eos = facts["eos_token_id"]
    stops = set(eos if isinstance(eos, list) else [eos])
    reference, runner = genai.CausalSession(fp32, threads), genai.GenaiRunner(deployable)

    def text(tokens: list[int]) -> str:
        cut = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
        return tokenizer.decode(tokens[:cut])

    out = {"fp32": [], "deployed": []}
    for task in tasks:
        prompt = tokenizer.encode(task["prompt"], add_special_tokens=False).ids
        new = len(tokenizer.encode(task["answer"], add_special_tokens=False).ids) + TASK_EXTRA_TOKENS
        out["fp32"].append(text(genai.greedy(reference, prompt, new)))
        out["deployed"].append(text(runner.generate(prompt, new)[0]))
    return out


def _prompts(ids: list[int]) -> list[list[int]]:
    """Up to PROMPTS prompts of PROMPT_LEN tokens spread over the eval texts."""
    return [ids[i:i + PROMPT_LEN] for i in range(0, len(ids) - PROMPT_LEN, max(PROMPT_LEN, len(ids) // PROMPTS))][:PROMPTS]


def _validate(genai, language, fp32: Path, deployable: Path, deployed: Path, ids: list[int], threads: int) -> dict:
    """Perplexity/KL through ONNX Runtime on the deployed bytes; greedy agreement and timing through
    onnxruntime-genai on the deployable folder."""
    import resource

    reference = genai.CausalSession(fp32, threads)
    chunks = language.windows(ids, WINDOW, WINDOWS) or [ids[:WINDOW]]
    ref = language.score_windows(reference.score, None, chunks)
    candidate_session = genai.CausalSession(deployed, threads)
    cand = language.score_windows(candidate_session.score, ref["log_probs"], chunks)
    prompts = _prompts(ids)
    runner = genai.GenaiRunner(deployable)
    ref_tokens, cand_tokens, ttft, steps = [], [], [], []
    for prompt in prompts:
        ref_tokens.append(genai.greedy(reference, prompt, NEW_TOKENS))
        tokens, times = runner.generate(prompt, NEW_TOKENS)
        cand_tokens.append(tokens)
        ttft.append(times[0])
        steps += times[1:]
    return {"perplexity_fp32": ref["perplexity"], "perplexity": cand["perplexity"],
            "perplexity_increase": cand["perplexity"] / ref["perplexity"] - 1, "kl_mean": cand["kl_mean"],
            "eval_tokens": cand["tokens"], "windows": len(chunks), "window": WINDOW,
            "agreement": language.agreement(cand_tokens, ref_tokens), "prompts": len(prompts), "prompt_tokens": PROMPT_LEN,
            "new_tokens": NEW_TOKENS, **language.speed(ttft, steps), "threads": threads,
            # raw times, for baselines and `edgeopt report` (a ratio with a confidence interval)
            "ttft_samples_ms": [round(t * 1000, 4) for t in ttft], "token_samples_ms": [round(t * 1000, 4) for t in steps],
            "build_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "model_mb": _onnx_bytes(deployed) / 2**20}


def _params(onnx_path: Path) -> int:
    """Float parameters of the FP32 export (initializer element counts; dims only, no weights read)."""
    import onnx  # heavy

    total = 0
    for init in onnx.load(str(onnx_path), load_external_data=False).graph.initializer:
        count = 1
        for dim in init.dims:
            count *= dim
        total += count
    return total

"""Prune stage: options, the stage objects and the build report's `prune` section, without
importing torch (a fully cached build, and a refused `--prune 2:4`, must not pay torch's import
time). The torch work is in prune_torch.py."""

from __future__ import annotations

from pathlib import Path


from edgeopt import host
from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec
from edgeopt.stages.prune_config import Importance, Mode, PruneConfig  # noqa: F401  (the stage's types)
from edgeopt.targets import TargetProfile

PRUNABLE_SOURCES = ("factory",)  # kinds whose loaded model is an nn.Module with its real layers
DEFAULT_FINETUNE_STEPS = 300


def parse_prune(value: str | float | None, target: TargetProfile) -> tuple[Mode, float | None] | None:
    """`--prune` text (or the profile's build.prune) -> (mode, ratio); None means no pruning.
    Refuses 2:4 on targets that do not accelerate it: masks there cost accuracy for nothing."""
    if value is None:
        value = target.build.prune
    if value is None or str(value).strip().lower() in ("", "none", "0", "0.0", "off"):
        return None
    text = str(value).strip()
    if text == "2:4":
        if not target.device.sparse_2_4:
            kind = target.device.arch.capitalize() if target.device.kind == "gpu" else f"{target.device.arch} CPU"
            raise BadInput(f"--prune 2:4: {target.name} ({kind}) does not accelerate 2:4 "
                           "sparsity (Ampere and newer GPUs do); use --prune RATIO for structured pruning")
        return "2:4", None
    try:
        ratio = float(text)
    except ValueError:
        raise BadInput(f"--prune {text}: expected a ratio between 0 and 1 (e.g. 0.5), '2:4' or 'none'") from None
    if not 0 < ratio < 1:
        raise BadInput(f"--prune {text}: the ratio must be between 0 and 1 (the fraction of channels removed)")
    return "channels", ratio


def _latency(value: dict | None) -> dict | None:
    return {key: value[key] for key in ("p50", "p90", "p99")} if value else None


def prune_section(result: dict, report: dict | None) -> dict:
    """The `prune` section of `edgeopt build --json`, from the prune and prune_report stage results."""
    report = report or {}
    before, after = dict(result["before"]), dict(result["after"])
    before.update(onnx_bytes=report.get("onnx_bytes_before"), latency_ms=_latency(report.get("latency_before_ms")))
    after.update(onnx_bytes=report.get("onnx_bytes_after"), latency_ms=_latency(report.get("latency_after_ms")))
    accuracy_cost = None if before["accuracy"] is None or after["accuracy"] is None else round(
        before["accuracy"] - after["accuracy"], 6)
    speedup = round(before["latency_ms"]["p50"] / after["latency_ms"]["p50"], 3) \
        if before["latency_ms"] and after["latency_ms"] else None
    return {
        "mode": result["mode"], "ratio": result["ratio"], "importance": result["importance"],
        "channel_multiple": result["channel_multiple"], "head": result["head"], "ignored": result["ignored"],
        "protected": result["protected"], "sparse_layers": result["sparse_layers"],
        "before": before, "after": after,
        "accuracy_pruned": result["accuracy_pruned"],  # after pruning, before any recovery
        "accuracy_cost": accuracy_cost,  # FP32 top-1, unpruned minus final pruned (after recovery)
        "params_removed": round(1 - after["params"] / before["params"], 4) if before["params"] else None,
        "nonzero_removed": round(1 - after["nonzero_params"] / before["nonzero_params"], 4) if before["nonzero_params"] else None,
        "latency_speedup": speedup,  # FP32 p50, unpruned / pruned, same process
        "latency_note": report.get("latency_note"),
        "recovery": result["recovery"],
        "layers": result["layers"],
    }


class PruneStage:
    """SmallerModelFromModel: channels removed (or 2:4 masks), optionally distilled back."""

    name = "prune"
    reads: tuple[str, ...] = ()
    writes = (LAYOUT.pruned_model,)

    def __init__(self, source, model, spec: ModelSpec, config: PruneConfig, evaluation: Dataset,
                 ranking: Dataset, finetune: Dataset | None):
        self.source, self.model, self.spec, self.config = source, model, spec, config
        self.evaluation, self.ranking, self.finetune = evaluation, ranking, finetune

    def params(self) -> dict:
        return self.config.model_dump(mode="json")

    def inputs(self) -> dict:
        return {"model": self.source.sha256, "eval": self.evaluation.sha256,
                "finetune": self.finetune.sha256 if self.finetune else None,
                "ranking": self.ranking.sha256 if self.config.importance == "taylor" else None}

    def run(self, folder: Path):
        from edgeopt.stages.prune_torch import prune

        return prune(self.model.module(), self.spec, self.config, folder, eval_data=self.evaluation,
                     importance_data=self.ranking, finetune_data=self.finetune)


class UnprunedStage:
    """The unpruned model exported and timed beside the pruned FP32 ONNX (where validate times),
    for the before/after report."""

    name = "unpruned"
    writes = (LAYOUT.unpruned_fp32_onnx,)

    def __init__(self, source, model, spec: ModelSpec, pruned_fp32: Artifact | Path, evaluation: Dataset, target,
                 seconds: float):
        self.fp32_artifact = Artifact.of(pruned_fp32)
        pruned_fp32 = self.fp32_artifact.path
        self.source, self.model, self.spec, self.fp32, self.evaluation = source, model, spec, pruned_fp32, evaluation
        self.measure, self.note = host.stands_for(target)
        self.threads, self.seconds = host.default_threads(target), seconds
        self.reads = (pruned_fp32.name,)

    def params(self) -> dict:
        return {"threads": self.threads, "seconds": self.seconds,
                "host": host.host_info() if self.measure else None}

    def inputs(self) -> dict:
        return {"model": self.source.sha256, "pruned_fp32": self.fp32_artifact.sha256, "eval": self.evaluation.sha256}

    def run(self, folder: Path):
        from edgeopt.stages.prune_torch import compare_unpruned

        return compare_unpruned(self.model.module(), self.spec, self.fp32, self.evaluation, folder,
                                threads=self.threads, measure_latency=self.measure, seconds=self.seconds,
                                note=self.note)


def prune_setup(request: tuple, target, load, calib_full: Dataset, evaluation: Dataset, *, importance: str,
                ignore: tuple[str, ...], seed: int, finetune_data: Path | None = None,
                finetune_steps: int = 0) -> tuple[PruneConfig, Dataset | None, Dataset, list[str]]:
    """(config, fine-tune data, ranking data, warnings); `load` reads a data file. The stage's own
    values, not the CLI's options: the caller (steps.py) picks them out."""
    steps = finetune_steps or (DEFAULT_FINETUNE_STEPS if finetune_data else 0)
    if steps and not finetune_data:
        raise BadInput("--finetune-steps needs --finetune-data (the data to distill on)")
    finetune = load(finetune_data, "fine-tune") if finetune_data else None
    warnings = []
    if finetune is not None and (shared := len(finetune.sample_hashes() & evaluation.sample_hashes())):
        warnings.append(f"{shared} fine-tune samples also appear in the evaluation data: recovered accuracy is optimistic")
    config = PruneConfig(mode=request[0], ratio=request[1], importance=importance,
                         channel_multiple=target.build.channel_multiple, ignore=ignore,
                         finetune_steps=steps, seed=seed)
    return config, finetune, finetune or calib_full, warnings  # Taylor importance needs gradients on real data


def prune_cost_warning(result: dict, budget: float, recovered: bool) -> list[str]:
    before, after = result["before"]["accuracy"], result["after"]["accuracy"]
    if before is None or after is None or before - after <= budget:
        return []
    hint = "" if recovered else "; add --finetune-data DATA to recover it"
    return [f"pruning cost {(before - after) * 100:.2f} points of FP32 accuracy ({before * 100:.2f}% -> "
            f"{after * 100:.2f}%), more than the {budget * 100:.2f}-point budget{hint}"]

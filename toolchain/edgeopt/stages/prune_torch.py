"""Pruning in torch (the prune stage's work): a module -> a physically smaller (or 2:4 sparse) module, as a `.pt2`.

Masking weights (torch.nn.utils.prune) keeps every tensor at full size, so nothing runs faster.
Structured pruning here removes whole channels through Torch-Pruning's dependency graph (a
conv's output channels together with its BatchNorm and the next layer's input channels), so the
exported ONNX has smaller tensors and fewer MACs on any backend. Channel counts are rounded to
the target's `build.channel_multiple` because tensor cores and SIMD kernels pad odd counts back
up. 2:4 semi-structured sparsity keeps the shapes and only pays off where the hardware skips the
zeros (Ampere and newer), so it is refused elsewhere.

The output is a torch.export `.pt2`, not `torch.save(module)`: a pickled module needs
`weights_only=False` to load (arbitrary code from a cache file) and the original class, whose
constructor no longer matches the pruned shapes; a `.pt2` holds graph and weights, loads
without unpickling code, and is a model reference the export stage already understands.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec
from edgeopt.stages.finetune import FinetuneResult, distill, first_tensor, predict, tensors
from edgeopt.build_dir import LAYOUT
from edgeopt.stages.prune_config import Importance, Mode, PruneConfig

TAYLOR_SAMPLES = 256


class ModelStats(BaseModel):
    params: int
    nonzero_params: int
    macs: int
    bytes: int = Field(description="bytes of the FP32 state dict (weights and buffers)")
    accuracy: float | None = Field(None, description="top-1 on the evaluation data, torch FP32")


class PruneResult(BaseModel):
    mode: Mode
    ratio: float | None
    importance: Importance | None
    channel_multiple: int
    head: str | None
    ignored: list[str]
    protected: list[str] = Field(description="producers kept whole so that ignored layers stay untouched")
    before: ModelStats
    after: ModelStats
    accuracy_pruned: float | None = Field(None, description="after pruning, before recovery")
    recovery: FinetuneResult | None = None
    layers: dict[str, list[int]] = Field(description="weight shape per Conv/Linear after pruning")
    sparse_layers: list[str] = Field(default_factory=list)
    seconds_prune: float
    seconds_finetune: float = 0.0


def _root_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear))}


def find_head(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> str | None:
    """The last Conv/Linear that runs in forward: its outputs are the model's classes."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: order.append(name))
             for name, m in _root_layers(model).items()]
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1] if order else None


def _modules(model: torch.nn.Module, names: tuple[str, ...]) -> dict[str, torch.nn.Module]:
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not name:
            layers = ", ".join(list(_root_layers(model))[:8])
            raise BadInput(f"--prune-ignore {name}: no module of that name (Conv/Linear layers: {layers}, ...)")
    return {name: modules[name] for name in names}


def _producers(graph, model: torch.nn.Module, layer: torch.nn.Module) -> list[torch.nn.Module]:
    """Layers whose output-channel pruning would also cut `layer`'s input channels."""
    pruner = graph.get_pruner_of_module(layer)
    if pruner is None or not hasattr(pruner, "prune_in_channels"):
        return []
    group = graph.get_pruning_group(layer, pruner.prune_in_channels, idxs=[0])
    roots = set(_root_layers(model).values())
    found = []
    for dep, _ in group:
        module = dep.target.module
        owner = graph.get_pruner_of_module(module)
        if module in roots and module is not layer and owner is not None and dep.handler == owner.prune_out_channels:
            found.append(module)
    return found


def _importance(kind: Importance):
    import torch_pruning as tp

    return {"magnitude": lambda: tp.importance.MagnitudeImportance(p=2),
            "bn": tp.importance.BNScaleImportance,
            "taylor": tp.importance.TaylorImportance}[kind]()


def _taylor_gradients(model: torch.nn.Module, data: Dataset, names: list[str], task: str) -> None:
    """Fill .grad for Taylor importance: loss against labels, else against the model's own argmax."""
    sample = data.subset(TAYLOR_SAMPLES)
    model.eval()
    model.zero_grad()
    for start in range(0, len(sample), 64):
        rows = slice(start, start + 64)
        output = first_tensor(model(*tensors(sample, names, rows)))
        if task == "classification":
            labels = torch.from_numpy(sample.labels[rows]).long() if sample.labels is not None else output.argmax(1).detach()
            loss = torch.nn.functional.cross_entropy(output, labels)
        else:
            loss = output.pow(2).mean()
        loss.backward()


def kept_ratio(module: torch.nn.Module, ratio: float, multiple: int) -> float:
    """Per-layer ratio whose kept channel count is the nearest multiple of `multiple` (at least one).

    Torch-Pruning's own `round_to` floors the kept count, so 0.25 of 32 channels at multiple 16
    removes half, and 0.75 (8 kept, floored to 0) removes none; we round to nearest instead. Half
    a channel of slack keeps its int() truncation from landing one below the multiple.
    """
    channels = module.weight.shape[0]
    kept = int(channels * (1 - ratio) / multiple + 0.5) * multiple
    kept = min(max(kept, multiple), channels)
    return 0.0 if kept >= channels else 1 - (kept + 0.5) / channels


def prune_channels(model: torch.nn.Module, example: tuple[torch.Tensor, ...], config: PruneConfig,
                   keep: list[str], data: Dataset | None = None, names: list[str] | None = None,
                   task: str = "classification") -> list[str]:
    """Remove channels from `model` in place; returns the producers kept whole for `keep`.

    Every module in `keep` keeps its output channels (the head keeps its classes); ignored
    layers (`config.ignore`) also keep their input channels, so their weights are untouched.
    """
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    kept = _modules(model, tuple(keep))
    protected: dict[int, torch.nn.Module] = {}
    for name in config.ignore:
        for producer in _producers(graph, model, kept[name]):
            protected[id(producer)] = producer
    ignored = list(kept.values()) + list(protected.values())
    if config.importance == "taylor":
        if data is None:
            raise BadInput("--prune-importance taylor needs data (calibration or --finetune-data)")
        _taylor_gradients(model, data, names or [], task)
    ratios = {module: kept_ratio(module, config.ratio, config.channel_multiple)
              for module in _root_layers(model).values() if all(module is not m for m in ignored)}
    pruner = tp.pruner.MetaPruner(model, example, importance=_importance(config.importance),
                                  pruning_ratio=config.ratio, pruning_ratio_dict=ratios, ignored_layers=ignored,
                                  round_to=config.channel_multiple)
    pruner.step()
    model.zero_grad(set_to_none=True)
    by_id = {id(m): n for n, m in model.named_modules()}
    return sorted(by_id[i] for i in protected)


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """0/1 mask keeping the 2 largest-magnitude weights of every 4 consecutive input weights
    (the input-channel axis, as TensorRT's sparse kernels group them)."""
    moved = weight.detach().movedim(1, -1)  # [out, *kernel, in]
    groups = moved.abs().reshape(-1, 4)
    keep = groups.topk(2, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, keep, 1.0)
    return mask.reshape(moved.shape).movedim(-1, 1).contiguous()


def eligible_2_4(name: str, module: torch.nn.Module) -> bool:
    """Dense Conv/Linear with TensorRT's sparse alignment (out % 8, in % 16; ASP's rule)."""
    if getattr(module, "groups", 1) != 1:
        return False
    out_features, in_features = module.weight.shape[:2]
    return out_features % 8 == 0 and in_features % 16 == 0


def apply_2_4(model: torch.nn.Module, skip: set[str]) -> dict[str, torch.Tensor]:
    """Zero 2 of every 4 weights in eligible layers; returns parameter name -> mask."""
    masks = {}
    with torch.no_grad():
        for name, module in _root_layers(model).items():
            if name in skip or not eligible_2_4(name, module):
                continue
            mask = mask_2_4(module.weight)
            module.weight.mul_(mask)
            masks[f"{name}.weight" if name else "weight"] = mask
    return masks


def accuracy(model: torch.nn.Module, data: Dataset | None, names: list[str], task: str) -> float | None:
    if data is None or data.labels is None or task != "classification":
        return None
    predicted = predict(model, data, names).reshape(len(data), -1).argmax(1).numpy()
    return round(float((predicted == data.labels).mean()), 6)


def stats(model: torch.nn.Module, example: tuple[torch.Tensor, ...], data: Dataset | None, names: list[str],
          task: str) -> ModelStats:
    import torch_pruning as tp

    single = tuple(t[:1] for t in example)
    macs, _ = tp.utils.count_ops_and_params(model, single[0] if len(single) == 1 else single)
    params = list(model.parameters())
    state = model.state_dict().values()
    return ModelStats(params=sum(p.numel() for p in params), nonzero_params=sum(int((p != 0).sum()) for p in params),
                      macs=int(macs), bytes=sum(t.numel() * t.element_size() for t in state),
                      accuracy=accuracy(model, data, names, task))


def save_pt2(model: torch.nn.Module, spec: ModelSpec, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """torch.export with the spec's dynamic axes (example batch 2: export specializes size 1)."""
    shapes = tuple({axis: torch.export.Dim(f"{item.name}_{dim}") for axis, dim in item.dynamic_axes.items()}
                   for item in spec.inputs)
    program = torch.export.export(model.eval(), example, dynamic_shapes=shapes)
    torch.export.save(program, str(path))


def prune(model: torch.nn.Module, spec: ModelSpec, config: PruneConfig, out_dir: Path, *,
          eval_data: Dataset | None, importance_data: Dataset | None = None,
          finetune_data: Dataset | None = None) -> PruneResult:
    """Prune a copy of `model` (left as it was), optionally distill it back, write `model.pruned.pt2`."""
    names = [item.name for item in spec.inputs]
    reference = eval_data or importance_data or finetune_data
    if reference is None:
        raise BadInput("pruning needs data to trace the model (evaluation or calibration data)")
    example = tensors(reference, names, slice(0, 2))
    torch.manual_seed(config.seed)
    teacher = model.eval()
    student = copy.deepcopy(teacher)
    before = stats(teacher, example, eval_data, names, spec.task)
    head = find_head(student, example)
    _modules(student, config.ignore)  # unknown names fail before any work
    started = time.perf_counter()
    masks: dict[str, torch.Tensor] = {}
    protected: list[str] = []
    if config.mode == "channels":
        keep = list(dict.fromkeys(([head] if head else []) + list(config.ignore)))
        protected = prune_channels(student, example, config, keep, importance_data or finetune_data, names, spec.task)
    else:
        masks = apply_2_4(student, set(config.ignore) | ({head} if head else set()))
        if not masks:
            raise BadInput(f"{spec.name}: no Conv/Linear layer is eligible for 2:4 sparsity "
                           "(needs output channels % 8 and input channels % 16)")
    seconds_prune = time.perf_counter() - started
    accuracy_pruned = accuracy(student, eval_data, names, spec.task)
    recovery, seconds_finetune = None, 0.0
    if config.finetune_steps and finetune_data is not None:
        started = time.perf_counter()
        recovery = distill(student, teacher, finetune_data, names, config.finetune_steps, task=spec.task,
                           masks=masks, seed=config.seed)
        seconds_finetune = time.perf_counter() - started
    after = stats(student, example, eval_data, names, spec.task)
    save_pt2(student, spec, example, out_dir / LAYOUT.pruned_model)
    return PruneResult(
        mode=config.mode, ratio=config.ratio, importance=config.importance if config.mode == "channels" else None,
        channel_multiple=config.channel_multiple, head=head, ignored=list(config.ignore), protected=protected,
        before=before, after=after, accuracy_pruned=accuracy_pruned, recovery=recovery,
        layers={name: list(m.weight.shape) for name, m in _root_layers(student).items()},
        sparse_layers=[name.rsplit(".weight", 1)[0] for name in masks],
        seconds_prune=round(seconds_prune, 3), seconds_finetune=round(seconds_finetune, 3))


def sparsity_2_4_ok(weight: np.ndarray | torch.Tensor) -> bool:
    """True when every group of 4 consecutive input weights holds at least 2 zeros."""
    tensor = weight.detach() if isinstance(weight, torch.Tensor) else torch.from_numpy(np.array(weight))
    tensor = tensor.movedim(1, -1).reshape(-1, 4)
    return bool(((tensor == 0).sum(dim=1) >= 2).all())


class PruneReport(BaseModel):
    """The unpruned model beside the pruned one, measured the way validate measures."""

    onnx_bytes_before: int
    onnx_bytes_after: int
    latency_before_ms: dict | None = None
    latency_after_ms: dict | None = None
    latency_note: str | None = None


def compare_unpruned(unpruned: torch.nn.Module, spec: ModelSpec, pruned_fp32: Path, data: Dataset, out_dir: Path, *,
                     threads: int, measure_latency: bool, seconds: float = 2.0, note: str | None = None) -> PruneReport:
    """Export the unpruned model (LAYOUT.unpruned_fp32_onnx) and time it against the pruned FP32 ONNX
    (interleaved in one process, so the ratio is fair)."""
    from edgeopt import bench
    from edgeopt.stages.export import export_onnx

    baseline = out_dir / LAYOUT.unpruned_fp32_onnx
    export_onnx(unpruned, spec, baseline, data)
    report = PruneReport(onnx_bytes_before=baseline.stat().st_size, onnx_bytes_after=pruned_fp32.stat().st_size,
                         latency_note=None if measure_latency else note)
    if measure_latency:
        latency = bench.measure_onnx({"before": baseline, "after": pruned_fp32}, data, threads, duration_s=seconds)
        report.latency_before_ms = latency["before"].model_dump()
        report.latency_after_ms = latency["after"].model_dump()
    return report

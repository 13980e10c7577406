"""Recovery fine-tune after pruning: knowledge distillation from the unpruned model.

A pruned network starts close to its teacher, so a few hundred steps on a few hundred samples
recover most of the lost accuracy; the teacher's soft logits carry more signal per sample than
labels alone, and unlabeled data still works. The teacher's outputs are computed once up front
(the teacher is frozen), which keeps a step as cheap as one student forward and backward.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel

from edgeopt.data.dataset import Dataset

TEMPERATURE = 4.0  # Hinton et al.: soften logits so the non-argmax classes carry signal
BATCH = 64
LEARNING_RATE = 3e-3


class FinetuneResult(BaseModel):
    steps: int
    samples: int
    used_labels: bool
    loss_first: float
    loss_last: float


def first_tensor(output) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, a tuple/list, or a dict such as HF's)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    return first_tensor(output[0])


def tensors(data: Dataset, names: list[str], rows) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(data.inputs[n][rows])) for n in names)


@torch.no_grad()
def predict(model: torch.nn.Module, data: Dataset, names: list[str], batch: int = 256) -> torch.Tensor:
    model.eval()
    chunks = [first_tensor(model(*tensors(data, names, slice(i, i + batch)))) for i in range(0, len(data), batch)]
    return torch.cat(chunks)


def distill(student: torch.nn.Module, teacher: torch.nn.Module, data: Dataset, names: list[str], steps: int, *,
            task: str = "classification", masks: dict[str, torch.Tensor] | None = None, seed: int = 0) -> FinetuneResult:
    """Train `student` in place for `steps` steps to match `teacher` on `data`.

    Classification: KL on temperature-softened logits, plus cross-entropy when `data` has labels.
    Other tasks: mean squared error on the first output. `masks` (parameter name -> 0/1 tensor)
    are re-applied after every step so 2:4 sparsity survives the fine-tune.
    """
    torch.manual_seed(seed)
    targets = predict(teacher, data, names)
    labels = torch.from_numpy(data.labels).long() if data.labels is not None and task == "classification" else None
    params = dict(student.named_parameters())
    optimizer = torch.optim.AdamW(student.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    student.train()
    for _ in range(steps):
        rows = torch.randint(0, len(data), (min(BATCH, len(data)),), generator=generator).numpy()
        output = first_tensor(student(*tensors(data, names, rows)))
        target = targets[rows]
        if task == "classification":
            loss = F.kl_div(F.log_softmax(output / TEMPERATURE, dim=1), F.softmax(target / TEMPERATURE, dim=1),
                            reduction="batchmean") * TEMPERATURE ** 2
            if labels is not None:
                loss = loss + F.cross_entropy(output, labels[rows])
        else:
            loss = F.mse_loss(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if masks:
            with torch.no_grad():
                for name, mask in masks.items():
                    params[name].mul_(mask)
        losses.append(loss.item())
    student.eval()
    return FinetuneResult(steps=steps, samples=len(data), used_labels=labels is not None,
                          loss_first=round(losses[0], 5) if losses else 0.0,
                          loss_last=round(float(np.mean(losses[-10:])), 5) if losses else 0.0)

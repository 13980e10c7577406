"""The data of one build and what each part is for.

Calibration data sets the activation ranges and chooses the INT8 recipe and the layers kept in
float; evaluation data only judges (metrics and gates). Without `--eval` the build validates on
the calibration data and says that this flatters INT8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.data import ReaderOptions, load_dataset
from edgeopt.data.dataset import Dataset
from edgeopt.models.spec import ModelSpec


@dataclass
class BuildData:
    calibration: Dataset  # the whole calibration file
    calib: Dataset  # the deterministic sample the quantizer calibrates on
    evaluation: Dataset
    evaluation_given: bool
    warnings: list[str] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)  # the other --calib sources and how many samples each gave

    def uses(self) -> dict[str, dict]:
        calib_use = ["activation ranges", "INT8 recipe and float-layer selection"]
        eval_use = ["reported metrics", "gates"]
        uses = {"calibration": {"path": str(self.calibration.source), "samples": len(self.calib),
                                "sha256": self.calib.sha256, "used_for": calib_use}}
        if self.extra:
            uses["calibration"]["extra"] = self.extra
        if self.evaluation_given:
            uses["evaluation"] = {"path": str(self.evaluation.source), "samples": len(self.evaluation),
                                  "sha256": self.evaluation.sha256, "used_for": eval_use}
        else:
            uses["calibration"]["used_for"] = calib_use + eval_use
        return uses


EXTRA_SHARE = 0.25  # of the calibration sample, at most, from the other --calib sources (field samples)


def reader_of_build(manifest: dict, spec: ModelSpec) -> ReaderOptions:
    """How a build read its data, from its manifest: texts for a Hugging Face model are tokenized as
    the build did (the folder's own tokenizer, padded to the exported sequence length), so packaged
    evaluation data and field data hash and tokenize alike."""
    if manifest["model"].get("kind") != "huggingface":
        return ReaderOptions()
    from edgeopt.models.huggingface import check_folder  # transformers' tokenizer folder checks: HF builds only

    layout = check_folder(Path(manifest["model"]["source"]))
    return ReaderOptions(tokenizer=layout.model_dir, seq_len=spec.inputs[0].shape[1])


def load_build_data(calib_path: Path, eval_path: Path | None, spec: ModelSpec, reader: ReaderOptions,
                    samples: int, seed: int, extra: tuple[Path, ...] = ()) -> BuildData:
    calibration = load_dataset(calib_path, spec, "calibration", reader)
    calib, used = calibration.subset(samples, seed=seed), []
    if extra:
        calib, used = with_extra(calibration, [load_dataset(p, spec, "calibration", reader) for p in extra], samples, seed)
    if eval_path is None:
        return BuildData(calibration, calib, calibration, False,
                         ["no --eval data: validated on the calibration data, which flatters INT8"], used)
    evaluation = load_dataset(eval_path, spec, "evaluation", reader)
    data = BuildData(calibration, calib, evaluation, True, extra=used)
    overlap = len(calib.sample_hashes() & evaluation.sample_hashes())
    if overlap:
        data.warnings.append(f"{overlap} calibration samples also appear in the evaluation data")
    return data


def with_extra(calibration: Dataset, extra: list[Dataset], samples: int, seed: int) -> tuple[Dataset, list[dict]]:
    """The calibration sample with the other sources in it: at most EXTRA_SHARE of `samples`,
    split evenly over the sources, each a deterministic sample; the first source fills the rest."""
    from edgeopt.errors import BadInput

    budget = max(1, int(samples * EXTRA_SHARE))
    per_source = [min(len(d), budget // len(extra) or 1) for d in extra]
    parts = [d.subset(n, seed=seed) for d, n in zip(extra, per_source)]
    base = calibration.subset(max(1, samples - sum(per_source)), seed=seed)
    names = list(base.inputs)
    for part in parts:
        shapes = {n: (part.inputs[n].shape[1:], base.inputs[n].shape[1:]) for n in names}
        bad = [n for n, (a, b) in shapes.items() if a != b]
        if bad:
            raise BadInput(f"{part.source}: input '{bad[0]}' has per-sample shape {shapes[bad[0]][0]}, the first --calib "
                           f"{shapes[bad[0]][1]}")
    inputs = {n: np.concatenate([base.inputs[n]] + [p.inputs[n] for p in parts]) for n in names}
    labelled = base.labels is not None and all(p.labels is not None for p in parts)
    labels = np.concatenate([base.labels] + [p.labels for p in parts]) if labelled else None
    used = [{"path": str(p.source), "samples": len(p), "sha256": p.sha256} for p in parts]
    return Dataset(inputs, labels, calibration.source), used

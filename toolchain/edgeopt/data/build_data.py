"""The data of one build and what each part is for.

Calibration data sets the activation ranges and chooses the INT8 recipe and the layers kept in
float; evaluation data only judges (metrics and gates). Without `--eval` the build validates on
the calibration data and says that this flatters INT8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

    def uses(self) -> dict[str, dict]:
        calib_use = ["activation ranges", "INT8 recipe and float-layer selection"]
        eval_use = ["reported metrics", "gates"]
        uses = {"calibration": {"path": str(self.calibration.source), "samples": len(self.calib),
                                "sha256": self.calib.sha256, "used_for": calib_use}}
        if self.evaluation_given:
            uses["evaluation"] = {"path": str(self.evaluation.source), "samples": len(self.evaluation),
                                  "sha256": self.evaluation.sha256, "used_for": eval_use}
        else:
            uses["calibration"]["used_for"] = calib_use + eval_use
        return uses


def load_build_data(calib_path: Path, eval_path: Path | None, spec: ModelSpec, reader: ReaderOptions,
                    samples: int, seed: int) -> BuildData:
    calibration = load_dataset(calib_path, spec, "calibration", reader)
    calib = calibration.subset(samples, seed=seed)
    if eval_path is None:
        return BuildData(calibration, calib, calibration, False,
                         ["no --eval data: validated on the calibration data, which flatters INT8"])
    evaluation = load_dataset(eval_path, spec, "evaluation", reader)
    data = BuildData(calibration, calib, evaluation, True)
    overlap = len(calib.sample_hashes() & evaluation.sample_hashes())
    if overlap:
        data.warnings.append(f"{overlap} calibration samples also appear in the evaluation data")
    return data

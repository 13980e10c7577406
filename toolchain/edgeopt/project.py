"""edgeopt.yaml: the models and targets of a release, validated strictly (unknown keys and wrong
types are errors naming the file and the key), and the (model, target) pairs they make.

    models:
      digits:                      # the bundled example (no source)
        prune: none
      tiny:
        source: models/tiny.py:build
        calib: data/calib.npz
        eval: data/eval.npz
        task: classification       # Hugging Face folders: classification | embedding | regression
        metric: accuracy           # the gate's measure: accuracy (labels) | agreement | cosine
        precision: int8
        prune: "0.5"
    targets: [cpu, jetson]
    options:                       # optional: shared BuildOptions for every pair
      latency_seconds: 1.0

Relative paths are relative to the project file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeopt.errors import BadInput
from edgeopt.targets import describe_error, read_yaml_mapping


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, description="model reference as `edgeopt build MODEL`; none: the bundled example")
    calib: Path | None = Field(None, description="calibration data")
    eval: Path | None = Field(None, description="evaluation data")
    task: Literal["classification", "embedding", "regression", "text-generation"] | None = Field(
        None, description="Hugging Face folders; text-generation forces the LLM path (detected from config.json anyway)")
    metric: Literal["accuracy", "agreement", "cosine", "perplexity"] = Field(
        "accuracy", description="what the report leads with; the gates are the target's")
    precision: Literal["int8"] = Field("int8", description="the only precision edgeopt builds today")
    prune: str | None = Field(None, description="channel ratio (0.5), '2:4' or 'none'; unset: the target's build.prune")

    @field_validator("prune", mode="before")
    @classmethod
    def _prune_text(cls, value):
        return None if value is None else str(value)


class SharedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_seconds: float = Field(2.0, gt=0)
    calib_samples: int = Field(256, ge=1)
    max_accuracy_drop: float | None = Field(None, ge=0)


class Project(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelEntry] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    options: SharedOptions = Field(default_factory=SharedOptions)
    root: Path = Field(Path("."), exclude=True, description="the project file's folder (set on load)")

    def pairs(self, models: tuple[str, ...] = (), targets: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        for name in models:
            if name not in self.models:
                raise BadInput(f"--model {name}: not in the project (models: {', '.join(self.models)})")
        for name in targets:
            if name not in self.targets:
                raise BadInput(f"--target {name}: not in the project (targets: {', '.join(self.targets)})")
        return [(m, t) for m in self.models for t in self.targets
                if (not models or m in models) and (not targets or t in targets)]

    def matrix(self, by: str = "target") -> dict:
        """GitHub Actions `strategy.matrix` JSON: `include` rows with target (and model)."""
        if by == "target":
            return {"include": [{"target": t} for t in self.targets]}
        return {"include": [{"model": m, "target": t} for m, t in self.pairs()]}

    def path(self, value: Path | None) -> Path | None:
        return None if value is None else (value if value.is_absolute() else self.root / value)

    def source(self, entry: ModelEntry) -> str | None:
        """A file reference is resolved against the project folder; `package.module:factory` is kept."""
        if entry.source is None:
            return None
        from edgeopt.safe_io import inside

        file_part = entry.source.split(":", 1)[0]
        candidate = self.root / file_part
        looks_like_a_path = "/" in file_part or "\\" in file_part or Path(file_part).suffix in (".py", ".pt2", ".pt", ".onnx")
        if Path(file_part).is_absolute() or looks_like_a_path or candidate.exists():
            # a model path in the project file must stay inside the project folder, and exist
            inside(self.root, file_part, "the model source", self.root / "edgeopt.yaml")
            if not candidate.exists():
                raise BadInput(f"{candidate}: the model source named in {self.root / 'edgeopt.yaml'} does not exist")
            return str(self.root / entry.source)
        return entry.source


def load_project(path: str | Path) -> Project:
    path = Path(path)
    raw = read_yaml_mapping(path, missing="project file not found (write an edgeopt.yaml or pass --project)",
                            not_mapping="expected a mapping with 'models' and 'targets'", unique_keys=False)
    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(describe_error(path, exc)) from None
    return project.model_copy(update={"root": path.resolve().parent})

"""Shared fixtures: an isolated stage cache and one example build reused by many tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeopt.cli import main

# hf_models: the tiny Hugging Face model zoo (hf_zoo); fake_tensorrt: orin, qdq_model, fp32_model
pytest_plugins = ["hf_models", "helpers.fake_tensorrt"]

REPO = Path(__file__).resolve().parents[1]
CALIB = REPO / "calibration" / "digits_calib.npz"
EVAL = REPO / "calibration" / "digits_eval.npz"
FAST = ["--latency-seconds", "0.2"]


def without_tensorrt(patch: pytest.MonkeyPatch) -> None:
    """This host has no TensorRT, whatever is installed: the one place tests say so."""
    from edgeopt.backends.tensorrt import api as tensorrt_api

    patch.setattr(tensorrt_api, "load_tensorrt", lambda: None)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """A host without TensorRT (a Jetson build here defers its engine), also on a TensorRT host."""
    without_tensorrt(monkeypatch)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("edgeopt-cache")


@pytest.fixture(autouse=True)
def isolated_cache(cache_dir, monkeypatch):
    """No test reads or writes the user's real cache."""
    monkeypatch.setenv("EDGEOPT_CACHE", str(cache_dir))
    monkeypatch.delenv("EDGEOPT_TARGETS", raising=False)


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def build_json(*args: str) -> tuple[int, dict | None, str]:
    result = run_cli("build", *args, "--json")
    document = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, document, result.stderr


@pytest.fixture(scope="session")
def example_build(tmp_path_factory, cache_dir):
    """The bundled example built for the host CPU (the README's first command)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE", str(cache_dir))
        out = tmp_path_factory.mktemp("builds") / "cpu"
        code, document, stderr = build_json("--out", str(out), *FAST)
    assert code == 0, stderr
    return document


@pytest.fixture(scope="session")
def jetson_build(tmp_path_factory, cache_dir):
    """The bundled example built for the default Jetson: Q/DQ ONNX and a deferred engine plan."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE", str(cache_dir))
        without_tensorrt(patch)  # the deferred engine is what this fixture stands for
        out = tmp_path_factory.mktemp("builds") / "jetson"
        code, document, stderr = build_json("--target", "jetson", "--out", str(out), *FAST)
    assert code == 0, stderr
    return document


@pytest.fixture(scope="session")
def example_run(example_build, cache_dir, tmp_path_factory):
    """The example build run again through the pipeline with the same options, every stage served
    from the cache example_build filled: the run record (steps.BuildRun), the stage objects
    steps.py made, by name, and the result. Tests of steps.py and of single stages read it."""
    from edgeopt.pipeline import BuildOptions, Pipeline

    class Recording(Pipeline):
        def _start(self):
            self.record = super()._start()
            return self.record

        def run_stage(self, stage):
            self.stages[stage.name] = stage
            return super().run_stage(stage)

    options = BuildOptions(out=tmp_path_factory.mktemp("builds") / "cpu-again", cache_dir=cache_dir,
                           latency_seconds=float(FAST[1]))
    pipeline = Recording(options)
    pipeline.stages = {}
    result = pipeline.run()
    return pipeline.record, pipeline.stages, result

"""Provenance (in-toto Statement v1, SLSA provenance v1) and SBOM (CycloneDX 1.6) in real packages
of the bundled example (issue 21, items 2 and 3): they name the real inputs by the hashes the
build recorded, list exactly the shipped files, and the SBOM passes CycloneDX's strict schema."""

from __future__ import annotations

import json
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import run_cli

import edgeopt
from edgeopt.hashing import source_sha256
from edgeopt.build_dir import Manifest
from edgeopt.package import provenance, sbom
from edgeopt.package.bundle import package


def _documents(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def packaged(example_build, jetson_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    return {name: (build, _documents(package(Path(build["build_dir"]), out, command=["edgeopt", "package", "b"]).path))
            for name, build in (("cpu", example_build), ("jetson", jetson_build))}


@pytest.mark.parametrize("which", ["cpu", "jetson"])
def test_provenance_names_the_inputs_by_hash_and_every_output(which, packaged):
    build, files = packaged[which]
    manifest = json.loads(files["manifest.json"])
    statement = json.loads(files["provenance.json"])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {k: v for k, v in sums.items() if k != "provenance.json"}
    definition = statement["predicate"]["buildDefinition"]
    deps = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert deps["model"]["digest"]["sha256"] == build["model"]["sha256"] == manifest["model"]["sha256"]
    assert deps["calibration data"]["digest"]["sha256"] == manifest["data"]["calibration"]["sha256"]
    assert deps["evaluation data"]["digest"]["sha256"] == manifest["data"]["evaluation"]["sha256"]
    assert deps["target profile"]["digest"]["sha256"] == manifest["target"]["sha256"]
    assert deps["edgeopt"]["digest"]["sha256"] == source_sha256(Path(edgeopt.__file__).parent)  # this checkout built it
    assert deps["onnxruntime"]["uri"] == f"pkg:pypi/onnxruntime@{metadata.version('onnxruntime')}"
    parameters = definition["externalParameters"]
    assert parameters["target"]["name"] == build["target"]["name"] and parameters["package"]["command"] == ["edgeopt", "package", "b"]
    assert set(parameters["stages"]) == {s["name"] for s in manifest["stages"]}


def test_verify_show_prints_the_provenance(jetson_build, tmp_path):
    archive = package(Path(jetson_build["build_dir"]), tmp_path).path
    shown = run_cli("verify", str(archive), "--show")
    assert shown.exit_code == 0, shown.stdout
    assert "provenance (https://slsa.dev/provenance/v1)" in shown.stdout
    assert f"calibration data {jetson_build['data']['calibration']['sha256']}" in shown.stdout
    raw = json.loads(run_cli("verify", str(archive), "--show", "--json").stdout)
    assert raw["provenance"]["_type"] == "https://in-toto.io/Statement/v1"


@pytest.mark.parametrize("which", ["cpu", "jetson"])
def test_the_sbom_validates_against_the_cyclonedx_schema(which, packaged):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    build, files = packaged[which]
    text = files["sbom.cdx.json"].decode()
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    assert validator.validate_str(text) is None
    sbom = json.loads(text)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    broken = json.loads(text)
    broken["components"][0]["type"] = "ml-model"  # not a CycloneDX component type: the validator says so
    assert validator.validate_str(json.dumps(broken)) is not None
    by_type: dict[str, dict[str, dict]] = {}
    for component in sbom["components"]:
        by_type.setdefault(component["type"], {})[component["name"]] = component
    models = by_type["machine-learning-model"]
    assert models["digits-cnn"]["hashes"] == [{"alg": "SHA-256", "content": build["model"]["sha256"]}]
    deployed = "model.deployable.onnx" if which == "cpu" else "model.int8.onnx"
    assert models[deployed]["hashes"][0]["content"] == dict(reversed(line.split("  ", 1)) for line in
                                                            files["SHA256SUMS"].decode().splitlines())[deployed]
    assert by_type["data"]["calibration data"]["hashes"][0]["content"] == build["data"]["calibration"]["sha256"]
    libraries = by_type["library"]
    assert libraries["numpy"]["version"] == metadata.version("numpy") and libraries["numpy"]["purl"].startswith("pkg:pypi/numpy@")
    assert "edgeopt" in libraries and "pydantic" in libraries  # the build environment, from importlib.metadata
    if which == "jetson":
        assert by_type["framework"]["TensorRT"]["version"] == "10.3" and by_type["operating-system"]["JetPack"]["version"] == "6.2"
    else:
        assert by_type["framework"]["onnxruntime"]["version"] == metadata.version("onnxruntime")
    assert sbom["metadata"]["component"]["name"] == json.loads(files["package.json"])["name"]


def test_provenance_problems_name_each_way_a_statement_and_its_package_disagree(packaged):
    _, files = packaged["cpu"]
    statement = json.loads(files["provenance.json"])
    shipped = {name: digest for digest, name in (line.split("  ", 1) for line in files["SHA256SUMS"].decode().splitlines())}
    assert provenance.problems(statement, shipped) == []
    changed = dict(shipped, **{"model.deployable.onnx": "0" * 64})
    assert provenance.problems(statement, changed) == ["provenance.json: subject model.deployable.onnx sha256 differs from the file"]
    assert provenance.problems(statement, dict(shipped, **{"extra.py": "1" * 64})) == ["provenance.json: extra.py is not among its subjects"]
    assert provenance.problems({"_type": "x"}, shipped)[0].startswith("provenance.json: not an in-toto Statement v1")


@pytest.mark.parametrize("which", ["cpu", "jetson"])
def test_the_sbom_runtime_is_what_the_device_needs(which, packaged):
    _, files = packaged[which]
    names = [name for name, _, _ in sbom.runtime(Manifest.of(json.loads(files["manifest.json"])))]
    assert names == (["JetPack", "TensorRT", "CUDA", "cuDNN"] if which == "jetson" else ["onnxruntime"])

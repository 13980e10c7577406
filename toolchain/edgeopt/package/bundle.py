"""A release bundle: a build directory -> a byte-for-byte reproducible .tar.gz (archive.write_archive).

What goes in (issue 14): GPU targets ship the portable half of a TensorRT build (the ONNX the
plan builds from, build_plan.json, the calibration cache, the FP32 ONNX as the reference of
`engine build --eval`, the engine when one was built), a device runner script, and the
evaluation inputs with their FP32 outputs so the device can validate without the original data;
CPU targets ship the ONNX Runtime model and its session settings. Every package adds
manifest.json, metrics.json, report.md, package.json and SHA256SUMS (`sha256sum -c` format).

Reproducible (archive.py): entries sorted, every mtime 0, uid/gid 0 with empty owner names, modes 0644/0755,
PAX headers carrying nothing but what the entry needs, and a gzip header with mtime 0 and no
file name. The same build packaged twice (or on two machines with one zlib) gives the same bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.version import __version__
from edgeopt.assemble import slug
from edgeopt.backends import package_needs
from edgeopt.build_dir import LAYOUT, Manifest, find_build, read_build, verify_artifact
from edgeopt.errors import BadInput
from edgeopt.field.shipped import field_files
from edgeopt.hashing import sha256_file
from edgeopt.package.archive import EXECUTABLE, REGULAR, Content, write_archive
from edgeopt.package.signing import device_check_lines

PACKAGE_FORMAT = 1


class PackageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    role: str


class PackageInfo(BaseModel):
    """package.json: what the bundle is, for `edgeopt verify` and deployment tooling."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = PACKAGE_FORMAT
    name: str
    version: str | None
    layout: Literal["bundle", "triton"]
    edgeopt: str
    model: str
    target: str
    backend: Literal["onnxruntime", "tensorrt"]
    engine: Literal["built", "deferred", "not_applicable"]
    files: list[PackageFile] = Field(description="every file but SHA256SUMS, with what it is for")
    signing_key: str | None = Field(None, description="sha256 of the signing public key (DER SubjectPublicKeyInfo); "
                                                      "None: unsigned")


class PackageResult(BaseModel):
    path: Path
    name: str
    sha256: str
    bytes: int
    files: list[str]


# --- deterministic writers ------------------------------------------------------------------


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) without np.savez's wall-clock zip timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = REGULAR << 16
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def file_digests(entries: dict[str, Content]) -> dict[str, str]:
    """name -> sha256 of each entry (a file or bytes)."""
    import hashlib

    return {name: sha256_file(content) if isinstance(content, Path) else hashlib.sha256(content).hexdigest()
            for name, content in entries.items()}


def checksums_text(entries: dict[str, Content], digests: dict[str, str] | None = None) -> str:
    """SHA256SUMS in `sha256sum` format (two spaces, sorted paths), so a device checks it without edgeopt."""
    digests = digests if digests is not None else file_digests(entries)
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(entries))


# --- what a package holds ---------------------------------------------------------------------


def evaluation_files(build_dir: Path, manifest: dict, eval_path: Path | None) -> dict[str, bytes]:
    """The evaluation inputs (and labels) and the FP32 model's outputs on them, for validating
    on the device against numbers computed here. Data: `eval_path`, else the build's own."""
    from edgeopt.backends.onnxruntime import session as runtime
    from edgeopt.data import load_dataset
    from edgeopt.data.build_data import reader_of_build
    from edgeopt.models.spec import ModelSpec

    recorded = (manifest.get("data") or {}).get("evaluation") or (manifest.get("data") or {}).get("calibration")
    path = Path(eval_path) if eval_path else Path(recorded["path"]) if recorded else None
    if path is None:
        raise BadInput(f"{build_dir / LAYOUT.manifest}: no evaluation data recorded; pass --eval DATA")
    spec = ModelSpec.model_validate(manifest["model"]["spec"])
    data = load_dataset(path, spec, "evaluation", reader_of_build(manifest, spec))
    if eval_path is None and "evaluation" in (manifest.get("data") or {}) and data.sha256 != recorded["sha256"]:
        raise BadInput(f"{path}: the evaluation data changed since the build (sha256 differs from "
                       f"{LAYOUT.manifest}); pass --eval DATA")
    # one thread: the reference outputs must not depend on how a reduction was split
    session = runtime.session(verify_artifact(build_dir, manifest, LAYOUT.fp32_onnx), threads=1)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, runtime.run_all(session, data)))
    inputs = dict(data.inputs)
    if data.labels is not None:
        inputs["labels"] = data.labels
    return {LAYOUT.eval_inputs: npz_bytes(inputs), LAYOUT.eval_fp32_outputs: npz_bytes(outputs)}


def device_runner(manifest: dict) -> bytes:
    """The script a device runs inside the extracted package: check every file, then build,
    validate and time with run_on_device.py (JetPack's python3, numpy and TensorRT; nothing to
    install), or, where python3 cannot import tensorrt, build with the plan's trtexec line."""
    engine = Manifest.of(manifest).engine
    lines = [
        "#!/bin/sh",
        f"# Generated by edgeopt for target {manifest['target']['name']}: run it on that device, inside the",
        "# extracted package. It checks every file, then run_on_device.py checks this device's TensorRT",
        "# and GPU, builds the engine from build_plan.json, validates it against the FP32 outputs computed",
        f"# at build time, times it as trtexec does and writes {LAYOUT.device_results} here.",
        "# With a public key (--key FILE, EDGEOPT_PUBKEY or /etc/edgeopt/release.pub) it first verifies",
        f"# {LAYOUT.signature} with openssl and refuses to run an unsigned or changed package.",
        "set -eu",
        *device_check_lines(LAYOUT.checksums, LAYOUT.signature),
        "if python3 -c 'import numpy, tensorrt' >/dev/null 2>&1; then",
        f'  exec python3 -B {LAYOUT.device_runner_py} "$@"  # -B: no unlisted __pycache__ left for the next run',
        "fi",
        'echo "python3 cannot import numpy and tensorrt (install JetPack); building with trtexec only" >&2',
        f"exec {engine.get('trtexec') or 'false'}",
        "",
    ]
    return "\n".join(lines).encode()


RUNNER_MODULES = {  # file in the package -> the toolchain's own module it is (never a copy)
    LAYOUT.device_runner_py: ("edgeopt.device_runner", "device runner: build, validate and time with JetPack only (python3 >= 3.8)"),
    LAYOUT.device_runtime_py: ("edgeopt.device_runtime", "device runner's CUDA and engine session"),
    LAYOUT.timing_py: ("edgeopt.timing", "device runner's latency statistics (the host's rules)"),
    LAYOUT.compare_py: ("edgeopt.compare", "device runner's comparison with FP32 (the host's judging)"),
}


def device_runner_files() -> dict[str, bytes]:
    """run_on_device.py and the modules beside it: edgeopt's self-contained device runner."""
    from importlib.util import find_spec  # where the modules are, without importing them

    return {name: Path(find_spec(module).origin).read_bytes() for name, (module, _) in RUNNER_MODULES.items()}


def bundle_files(build_dir: Path, manifest: dict, backend: str, eval_path: Path | None) -> tuple[dict[str, Content], dict[str, str]]:
    """(entries, roles) of the default layout, every name from BuildLayout or the build plan."""
    entries: dict[str, Content] = {}
    roles: dict[str, str] = {}

    def add(name: str, role: str, content: Content | None = None) -> None:
        entries[name] = content if content is not None else verify_artifact(build_dir, manifest, name)
        roles[name] = role

    needs = package_needs(backend, build_dir, Manifest.of(manifest))  # the backend says which files
    for name, role in needs.files:
        add(name, role)
    for name, role, content in field_files(build_dir, entries):  # issue 22: calibration statistics and the field monitor
        add(name, role, content)
    if needs.device_runner:
        for name, content in evaluation_files(build_dir, manifest, eval_path).items():
            add(name, "evaluation inputs" if name == LAYOUT.eval_inputs else "FP32 outputs on the evaluation inputs", content)
        add(LAYOUT.device_runner, "device runner: check the files, then run run_on_device.py", device_runner(manifest))
        for name, content in device_runner_files().items():
            add(name, RUNNER_MODULES[name][1], content)
        metric = (manifest["model"].get("spec") or {}).get("metric")
        if metric:  # the device judges by the build's own --metric, as the host did
            source = Path(metric.rpartition(":")[0])
            if not source.is_file():
                raise BadInput(f"--metric {metric}: {source} not found (the package ships it for on-device judging)")
            add(LAYOUT.user_metric_py, "the build's --metric, for on-device judging", source.read_bytes())
    return entries, roles


def package_name(manifest: dict, version: str | None, layout: str) -> str:
    parts = [slug(manifest["model"]["name"]), slug(manifest["target"]["name"])]
    if version:
        parts.append(slug(version))
    if layout == "triton":
        parts.append("triton")
    return "-".join(parts)


def package(build_dir: Path, out: Path | None = None, *, version: str | None = None,
            layout: Literal["bundle", "triton"] = "bundle", eval_path: Path | None = None,
            sign: Path | None = None, command: list[str] | None = None) -> PackageResult:
    """Write `<out>/<model>-<target>[-<version>][-triton].tar.gz` from a build directory, with its
    SBOM and provenance (`command`: the package command, recorded there); with `sign` (a P-256
    private key, package/signing.py) also SHA256SUMS.sig, over SHA256SUMS."""
    from edgeopt.package import provenance, sbom, signing
    from edgeopt.package.release import render_package

    key_id = signing.key_id(sign) if sign is not None else None  # a loose or wrong key: refused before any work
    build_dir = find_build(Path(build_dir))
    manifest, target = read_build(build_dir)
    if layout == "triton":
        from edgeopt.package.triton import triton_files

        entries, roles = triton_files(build_dir, manifest, target)
    else:
        entries, roles = bundle_files(build_dir, manifest, target.backend, eval_path)
    entries[LAYOUT.manifest], roles[LAYOUT.manifest] = build_dir / LAYOUT.manifest, "build manifest (versions, hashes, stages)"
    entries[LAYOUT.metrics], roles[LAYOUT.metrics] = verify_artifact(build_dir, manifest, LAYOUT.metrics), "metrics"
    entries[LAYOUT.report], roles[LAYOUT.report] = render_package(manifest).encode(), "report"
    name = package_name(manifest, version, layout)
    roles[LAYOUT.sbom] = "CycloneDX 1.6 SBOM: model, data, the Python packages that built it, the device runtime"
    roles[LAYOUT.provenance] = "in-toto Statement v1, SLSA provenance v1: inputs by sha256, the outputs, the builder"
    if sign is not None:
        roles[LAYOUT.signature] = "signature of SHA256SUMS (openssl dgst -sha256 -verify KEY -signature SHA256SUMS.sig SHA256SUMS)"
    info = PackageInfo(
        name=name, version=version, layout=layout, edgeopt=__version__, model=manifest["model"]["name"],
        target=target.name, backend=target.backend, engine=Manifest.of(manifest).engine.get("status", "not_applicable"),
        files=[PackageFile(path=p, role=roles[p]) for p in sorted(roles)] + [PackageFile(path=LAYOUT.package_info, role="this file")],
        signing_key=key_id,
    )
    entries[LAYOUT.package_info] = (json.dumps(info.model_dump(mode="json"), indent=2) + "\n").encode()
    digests = file_digests(entries)
    entries[LAYOUT.sbom] = sbom.document(manifest, name, version, digests).encode()
    digests |= file_digests({LAYOUT.sbom: entries[LAYOUT.sbom]})
    entries[LAYOUT.provenance] = provenance.statement_bytes(provenance.statement(
        Manifest.of(manifest), digests, command, {"layout": layout, "version": version, "signing_key": key_id}))
    digests |= file_digests({LAYOUT.provenance: entries[LAYOUT.provenance]})
    entries[LAYOUT.checksums] = checksums_text(entries, digests).encode()
    if sign is not None:
        entries[LAYOUT.signature] = signing.sign(sign, entries[LAYOUT.checksums])
    dest = Path(out or "dist").resolve() / f"{name}.tar.gz"
    write_archive(dest, name, entries, executable=frozenset({LAYOUT.device_runner, LAYOUT.device_runner_py}))
    return PackageResult(path=dest, name=name, sha256=sha256_file(dest), bytes=dest.stat().st_size,
                         files=sorted(entries))


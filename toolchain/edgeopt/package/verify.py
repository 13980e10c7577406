"""`edgeopt verify PACKAGE`: is this release bundle exactly what `edgeopt package` wrote, and (on a
device) can this device build and run it?

Checks, each failure one problem naming the file: every file listed in SHA256SUMS is present and
has its hash (changed, removed), no file is unlisted (added), package.json and manifest.json
follow their schemas, and the manifest's artifact hashes agree with the files shipped. With
`device=True` (or whenever TensorRT is importable here) a TensorRT package is also checked
against this host's TensorRT version and GPU compute capability, with the same rule
`engine build` applies (builder.host_mismatch); with `device=True` an ONNX Runtime package is
checked against this host's architecture and CPU flags (host.stands_for). Archives are read through archive.safe_extract.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeopt.package.archive import safe_extract
from edgeopt.build_dir import LAYOUT, Manifest
from edgeopt.errors import BadInput
from edgeopt.hashing import sha256_file
from edgeopt.package.bundle import PackageInfo

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


class _Artifact(BaseModel):
    path: str
    bytes: int
    sha256: str


class _Named(BaseModel):
    name: str


class ManifestSchema(BaseModel):
    """The manifest keys a package relies on; the manifest may carry more (it only grows)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int
    edgeopt: str
    model: _Named
    target: _Named
    artifacts: list[_Artifact]
    gates: list[dict]
    engine: dict


class VerifyResult(BaseModel):
    package: str
    name: str | None
    files: int
    problems: list[str]
    device: dict | None = None  # {"checked": bool, "tensorrt": ..., "compute_capability": ..., "note": ...}
    signature: str = "unsigned"  # verified | failed | unsigned | not checked (signed, no --key given)
    provenance: dict | None = None  # the package's provenance.json statement, when it has a readable one

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_package(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (LAYOUT.checksums, LAYOUT.package_info, LAYOUT.manifest))


def _root(folder: Path) -> tuple[Path, list[str]]:
    """The package folder (`folder` itself, or the one subfolder holding a package's own files)
    and anything beside that subfolder, which a package never has."""
    if _is_package(folder):
        return folder, []
    candidates = [p for p in folder.iterdir() if p.is_dir() and _is_package(p)]
    if len(candidates) != 1:
        raise BadInput(f"{folder}: not an edgeopt package (no {LAYOUT.checksums}, {LAYOUT.package_info} "
                       f"or {LAYOUT.manifest} in one top-level folder)")
    extras = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p != candidates[0])
    return candidates[0], [f"{name}: added (outside the package folder {candidates[0].name}/)" for name in extras]


def read_checksums(path: Path, problems: list[str]) -> dict[str, str]:
    listed: dict[str, str] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        match = _LINE.match(line)
        if not match:
            problems.append(f"{LAYOUT.checksums}: line {number} is not '<sha256>  <path>'")
            continue
        listed[match.group(2)] = match.group(1)
    return listed


def check_files(root: Path) -> tuple[list[str], int]:
    problems: list[str] = []
    sums = root / LAYOUT.checksums
    if not sums.is_file():
        return [f"{LAYOUT.checksums}: removed (the package lists no checksums)"], 0
    from edgeopt.safe_io import inside, links_leaving

    leaving = links_leaving(root)
    if leaving:  # a symlink in a package is never followed out of it
        raise BadInput(f"{leaving[0]}: a symlink in the package leads outside {root}; refused")
    listed = {}
    for name, digest in read_checksums(sums, problems).items():
        try:
            inside(root, name, "a listed file", sums)
        except BadInput as exc:
            problems.append(f"{name}: outside the package ({exc})")
            continue
        listed[name] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    present -= {LAYOUT.checksums, LAYOUT.signature}  # the two files SHA256SUMS cannot list
    others = [p for p in root.rglob("*") if not p.is_symlink() and not p.is_dir() and not p.is_file()]
    if others:  # a FIFO or device in a package would hang or flood the hash
        raise BadInput(f"{others[0]}: not a regular file in the package; refused")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: added (not in {LAYOUT.checksums})")
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: removed (listed in {LAYOUT.checksums})")
    for name in sorted(present & set(listed)):
        if sha256_file(root / name) != listed[name]:
            problems.append(f"{name}: changed (sha256 differs from {LAYOUT.checksums})")
    return problems, len(listed)


def _load(root: Path, name: str, problems: list[str]) -> dict | None:
    from edgeopt.safe_io import SMALL_JSON_LIMIT, read_json

    if not (root / name).exists():
        return None  # reported by check_files
    try:
        value = read_json(root / name, SMALL_JSON_LIMIT, expect=None)
    except BadInput as exc:
        problems.append(f"{name}: not readable JSON ({exc})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{name}: not a JSON object")
        return None
    return value


def _schema_problem(name: str, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{name}: key '{where}': {first['msg']}"


def check_documents(root: Path) -> tuple[list[str], PackageInfo | None, Manifest | None]:
    problems: list[str] = []
    info: PackageInfo | None = None
    manifest: Manifest | None = None
    raw_info, raw_manifest = _load(root, LAYOUT.package_info, problems), _load(root, LAYOUT.manifest, problems)
    if raw_info is not None:
        try:
            info = PackageInfo.model_validate(raw_info)
        except ValidationError as exc:
            problems.append(_schema_problem(LAYOUT.package_info, exc))
    if raw_manifest is not None:
        try:
            ManifestSchema.model_validate(raw_manifest)  # the keys a package needs, strictly typed
            manifest = Manifest.of(raw_manifest)
        except ValidationError as exc:
            problems.append(_schema_problem(LAYOUT.manifest, exc))
    if manifest is not None:
        from edgeopt.safe_io import inside

        for entry in manifest.artifacts:
            try:  # a manifest entry naming a file outside the package (a /proc path hung verify)
                shipped = inside(root, str(entry["path"]), "an artifact path", root / LAYOUT.manifest)
            except BadInput as exc:
                problems.append(f"{entry['path']}: outside the package ({exc})")
                continue
            if shipped.is_file() and sha256_file(shipped) != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 differs from {LAYOUT.manifest}")
    if info is not None and manifest is not None and (info.model, info.target) != (manifest.model["name"], manifest.target["name"]):
        problems.append(f"{LAYOUT.package_info}: model/target {info.model}/{info.target} are not the manifest's")
    return problems, info, manifest


def check_provenance(root: Path) -> tuple[list[str], dict | None]:
    """provenance.json is an in-toto SLSA statement whose subjects are exactly the listed files."""
    from edgeopt.package import provenance

    if not (root / LAYOUT.provenance).is_file() or not (root / LAYOUT.checksums).is_file():
        return [], None  # removed: check_files says so (an older package has none and lists none)
    problems: list[str] = []
    document = _load(root, LAYOUT.provenance, problems)
    if document is None:
        return problems, None
    return provenance.problems(document, read_checksums(root / LAYOUT.checksums, [])), document


def check_signature(root: Path, info: PackageInfo | None, key: Path | None) -> tuple[list[str], str]:
    """(problems, state) of SHA256SUMS.sig against the public key `key` (package/signing.py)."""
    from edgeopt.package import signing

    signature, sums = root / LAYOUT.signature, root / LAYOUT.checksums
    if key is None:
        return [], "not checked" if signature.is_file() else "unsigned"
    public = signing.load_public_key(key)  # a key that is not one: BadInput (exit 2), before any verdict
    if not signature.is_file():
        return [f"{LAYOUT.signature}: unsigned package (no signature to check with {key}; package it with --sign KEY)"], "unsigned"
    if not sums.is_file():
        return [f"{LAYOUT.signature}: nothing to check it against ({LAYOUT.checksums} removed)"], "failed"
    claimed, given = info.signing_key if info is not None else None, signing.public_key_id(public)
    if claimed and claimed != given:
        return [f"{LAYOUT.signature}: signed by another key (key id {claimed[:16]}..., {key} is {given[:16]}...)"], "failed"
    if signature.stat().st_size > signing.KEY_LIMIT or signing.signature_problem(key, sums.read_bytes(), signature.read_bytes()):
        return [f"{LAYOUT.signature}: does not verify with {key}: {LAYOUT.checksums} or the signature changed "
                "after signing"], "failed"
    return [], "verified"


def check_device(root: Path, device: bool, builder=None) -> tuple[list[str], dict]:
    """This host's TensorRT and GPU against the build plan (TensorRT packages only)."""
    from edgeopt.backends.tensorrt import api as tensorrt_api
    from edgeopt.backends.tensorrt.builder import EngineBuilder, host_mismatch, read_plan

    plan_path = root / LAYOUT.tensorrt_plan
    if not plan_path.is_file():
        return _check_cpu(root) if device else ([], {"checked": False, "note": "no TensorRT build plan in this package"})
    if builder is None:
        if not tensorrt_api.available():
            if device:
                tensorrt_api.module()  # MissingEnvironment with the JetPack / pip hint
            return [], {"checked": False, "note": "TensorRT is not installed here: device compatibility not checked"}
        builder = EngineBuilder()
    plan = read_plan(plan_path)
    problems = host_mismatch(builder, plan)
    facts = {"checked": True, "tensorrt": builder.version(), "compute_capability": builder.device().compute_capability,
             "target_tensorrt": plan.tensorrt, "target_compute_capability": plan.compute_capability}
    return [f"{LAYOUT.tensorrt_plan}: this device has {p}" for p in problems], facts


def _check_cpu(root: Path) -> tuple[list[str], dict]:
    """An ONNX Runtime package on its device: this host's architecture and CPU flags are the
    target's (host.stands_for, the one answer to that question)."""
    from edgeopt import host
    from edgeopt.build_dir import manifest_target, read_manifest

    target = manifest_target(root, read_manifest(root))
    same, note = host.stands_for(target)
    facts = {"checked": True, "arch": host.machine(), "target": target.name}
    if target.backend != "onnxruntime" or same:
        return [], facts
    return [f"{LAYOUT.manifest}: this host is not target '{target.name}' ({note.split(': ', 1)[-1]})"], facts


def verify(path: Path, *, device: bool = False, builder=None, key: Path | None = None) -> VerifyResult:
    """Verify a package (.tar.gz) or an extracted package folder; with `key` (a PEM public key)
    also its signature, an unsigned package then being a problem. `builder` replaces the TensorRT
    EngineBuilder (tests pass one with a fake TensorRT and DeviceInfo)."""
    path = Path(path)
    if key is not None:
        from edgeopt.package.signing import load_public_key

        load_public_key(key)  # not a public key: exit 2 before the package is read
    if path.is_dir():
        return _verify_folder(path, str(path), device, builder, key)
    if not path.is_file():
        raise BadInput(f"{path}: no such package")
    with tempfile.TemporaryDirectory(prefix="edgeopt-verify-") as scratch:
        safe_extract(path, Path(scratch) / "package")
        return _verify_folder(Path(scratch) / "package", str(path), device, builder, key)


def _verify_folder(folder: Path, label: str, device: bool, builder, key: Path | None = None) -> VerifyResult:
    root, problems = _root(folder)
    file_problems, count = check_files(root)
    document_problems, info, _ = check_documents(root)
    signature_problems, signature = check_signature(root, info, key)
    provenance_problems, statement = check_provenance(root)
    problems += signature_problems + file_problems + document_problems + provenance_problems  # the signature first
    facts = None
    if problems:  # a changed plan must not decide the device check
        facts = {"checked": False, "note": "not checked: the package failed its file checks"}
    elif device or builder is not None or (info is not None and info.backend == "tensorrt"):
        device_problems, facts = check_device(root, device, builder)
        problems += device_problems
    return VerifyResult(package=label, name=info.name if info else None, files=count, problems=problems, device=facts,
                        signature=signature, provenance=statement)

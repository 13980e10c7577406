"""provenance.json: who built a package, from what, and what came out (issue 21, item 2).

The format is an in-toto Statement v1 (https://in-toto.io/Statement/v1) with a SLSA provenance v1
predicate (https://slsa.dev/provenance/v1), the format `slsa-verifier`, `cosign verify-attestation`
and in-toto tooling read:

- subject: every file of the package (SBOM and package.json included) with its sha256; not
  SHA256SUMS and its signature (they cover this file) and not this file itself;
- buildDefinition.externalParameters: what the user asked for: the model reference, the target
  profile (as recorded in the manifest, with its sha256), every stage's parameters, and the
  package command;
- buildDefinition.resolvedDependencies: what went in, by sha256: the model, the calibration and
  evaluation data (from the build manifest), the target profile, edgeopt (version and the hash of
  its source, hashing.source_sha256) and the library versions the manifest recorded;
- runDetails.builder: edgeopt and the host that built.

Not a DSSE envelope: the package's one signature (SHA256SUMS.sig) covers this file through
SHA256SUMS, so the statement needs no signature of its own. No timestamps: the same build packaged
twice gives the same bytes (the archive's rule).
"""

from __future__ import annotations

import json
from typing import Any

from edgeopt.build_dir import LAYOUT, Manifest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:edgeopt:buildtype:build-and-package:v1"


def _dependency(name: str, sha256: str | None, uri: str | None = None, **annotations: Any) -> dict[str, Any]:
    """A SLSA ResourceDescriptor (empty fields left out, as the spec asks)."""
    entry: dict[str, Any] = {"name": name}
    if uri:
        entry["uri"] = uri
    if sha256:
        entry["digest"] = {"sha256": sha256}
    if annotations:
        entry["annotations"] = {k: v for k, v in annotations.items() if v is not None}
    return entry


def resolved_dependencies(manifest: Manifest) -> list[dict[str, Any]]:
    model, target = manifest.model, manifest.target
    deps = [_dependency("model", model.get("sha256"), model.get("source"), kind=model.get("kind"), params=model.get("params"))]
    for role in ("calibration", "evaluation"):
        data = manifest.data.get(role)
        if data:
            deps.append(_dependency(f"{role} data", data.get("sha256"), data.get("path"), samples=data.get("samples")))
    deps.append(_dependency("target profile", target.get("sha256"), target.get("source"), profile=target.get("name")))
    deps.append(_dependency("edgeopt", manifest.edgeopt_source, f"pkg:pypi/edgeopt@{manifest.edgeopt}",
                            digest_of="edgeopt's .py files (hashing.source_sha256)" if manifest.edgeopt_source else None))
    for name, version in sorted(manifest.libraries.items()):
        deps.append(_dependency(name, None, f"pkg:pypi/{name}@{version}"))
    return deps


def statement(manifest: Manifest, subject: dict[str, str], command: list[str] | None = None,
              package: dict[str, Any] | None = None) -> dict[str, Any]:
    """The statement for a package whose files (name -> sha256) are `subject`."""
    manifest = Manifest.of(manifest)
    host = manifest.host
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": subject[name]}} for name in sorted(subject)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "model": manifest.model.get("source"),
                    "target": manifest.target,
                    "stages": {stage.get("name"): stage.get("params") for stage in manifest.stages},
                    "package": {"command": command, **(package or {})},
                },
                "internalParameters": {"stage_keys": {stage.get("name"): stage.get("key") for stage in manifest.stages}},
                "resolvedDependencies": resolved_dependencies(manifest),
            },
            "runDetails": {
                "builder": {"id": f"urn:edgeopt:{manifest.edgeopt}",
                            "version": {"edgeopt": manifest.edgeopt, "python": host.get("python")}},
                "metadata": {},
                "byproducts": [{"name": "host", "annotations": {k: host.get(k) for k in ("machine", "system", "python", "cpus")}}],
            },
        },
    }


def statement_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def problems(document: Any, shipped: dict[str, str]) -> list[str]:
    """What is wrong with a package's provenance.json, given the files it ships (name -> sha256):
    not an in-toto SLSA statement, or a subject that is not exactly the shipped files."""
    name = LAYOUT.provenance
    if not isinstance(document, dict) or document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != PREDICATE_TYPE:
        return [f"{name}: not an in-toto Statement v1 with a SLSA provenance v1 predicate"]
    try:
        subject = {entry["name"]: entry["digest"]["sha256"] for entry in document["subject"]}
    except (KeyError, TypeError):
        return [f"{name}: key 'subject': each entry needs a name and digest.sha256"]
    expected = {k: v for k, v in shipped.items() if k not in (LAYOUT.provenance, LAYOUT.checksums, LAYOUT.signature)}
    found = [f"{name}: subject {file} is not in the package" for file in sorted(set(subject) - set(expected))]
    found += [f"{name}: {file} is not among its subjects" for file in sorted(set(expected) - set(subject))]
    found += [f"{name}: subject {file} sha256 differs from the file" for file in sorted(set(subject) & set(expected))
              if subject[file] != expected[file]]
    return found


def table(document: dict[str, Any]) -> list[str]:
    """`edgeopt verify --show`: the statement as readable lines."""
    predicate = document.get("predicate") or {}
    definition = predicate.get("buildDefinition") or {}
    parameters = definition.get("externalParameters") or {}
    builder = (predicate.get("runDetails") or {}).get("builder") or {}
    target = parameters.get("target") or {}
    lines = [f"provenance ({document.get('predicateType')})",
             f"  builder   {builder.get('id')}",
             f"  model     {parameters.get('model')}",
             f"  target    {target.get('name') if isinstance(target, dict) else target}",
             f"  command   {' '.join((parameters.get('package') or {}).get('command') or []) or '(library call)'}",
             "  inputs"]
    for dep in definition.get("resolvedDependencies") or []:
        digest = (dep.get("digest") or {}).get("sha256")
        lines.append(f"    {dep.get('name', ''):<16} {digest or '-':<64}  {dep.get('uri') or ''}")
    lines.append("  outputs")
    for entry in document.get("subject") or []:
        lines.append(f"    {(entry.get('digest') or {}).get('sha256', ''):<64}  {entry.get('name')}")
    return lines

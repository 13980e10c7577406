"""sbom.cdx.json: the package's CycloneDX 1.6 bill of materials (issue 21, item 3), written with
cyclonedx-python-lib (the CycloneDX project's own library) rather than by hand.

Components: the model (type machine-learning-model: the source model and every model file the
package ships, by sha256), the calibration and evaluation data (type data), the Python packages
that built it (the distributions edgeopt's requirements resolve to in this environment, through
importlib.metadata, at the versions the build manifest recorded where it recorded one), and the
runtime the device needs (ONNX Runtime for a CPU target; JetPack, TensorRT, CUDA and cuDNN as the
target profile pins them for a GPU). The package itself is metadata.component.

Reproducible: the serial number is derived from the package's content (uuid5) and the timestamp
is left out, so packaging twice gives the same bytes. cyclonedx is imported inside `document`,
the one function that needs it.
"""

from __future__ import annotations

import json
import re
import uuid
from importlib import metadata

from edgeopt.build_dir import Manifest
from edgeopt.version import __version__

MODEL_FILES = (".onnx", ".engine", ".plan")  # the package files that are the model, as deployed


def build_distributions(recorded: dict[str, str]) -> dict[str, str]:
    """name -> version of edgeopt and every installed distribution its requirements reach (extras
    only where installed), the manifest's recorded versions first (they are the build's)."""
    found: dict[str, str] = {}
    pending = ["edgeopt", *recorded]
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[key] = recorded.get(name) or dist.version
        for requirement in dist.requires or []:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match and "extra ==" not in requirement:
                pending.append(match.group(1))
    return dict(sorted(found.items()))


def runtime(manifest: Manifest) -> list[tuple[str, str | None, str]]:
    """(name, version, CycloneDX type) of what the device must have to run the package."""
    target = manifest.target
    software = target.get("software") or {}
    if target.get("backend") == "tensorrt":
        return [("JetPack" if software.get("jetpack") else "OS", software.get("jetpack") or software.get("os"), "operating-system"),
                ("TensorRT", software.get("tensorrt"), "framework"), ("CUDA", software.get("cuda"), "framework"),
                ("cuDNN", software.get("cudnn"), "framework")]
    return [("onnxruntime", manifest.libraries.get("onnxruntime"), "framework")]


def document(manifest: Manifest, package_name: str, version: str | None, shipped: dict[str, str]) -> str:
    """The SBOM as CycloneDX 1.6 JSON text, for a package whose files (name -> sha256) are `shipped`."""
    # cyclonedx-python-lib: only packaging needs it
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentScope, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    manifest = Manifest.of(manifest)

    def sha(digest: str | None) -> list:
        return [HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else []

    model = manifest.model
    components = [Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=model.get("name", "model"), bom_ref="model",
                            hashes=sha(model.get("sha256")), description=f"the source model ({model.get('kind')})",
                            properties=[Property(name="edgeopt:source", value=str(model.get("source")))])]
    components += [Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=name, bom_ref=f"file:{name}", hashes=sha(digest),
                             description=f"{model.get('name')} as deployed on {manifest.target.get('name')}")
                   for name, digest in sorted(shipped.items()) if name.endswith(MODEL_FILES)]
    for role in ("calibration", "evaluation"):
        data = manifest.data.get(role)
        if data:
            components.append(Component(type=ComponentType.DATA, name=f"{role} data", bom_ref=f"data:{role}",
                                        hashes=sha(data.get("sha256")), description="; ".join(data.get("used_for") or []),
                                        properties=[Property(name="edgeopt:path", value=str(data.get("path"))),
                                                    Property(name="edgeopt:samples", value=str(data.get("samples")))]))
    for name, lib_version in build_distributions(manifest.libraries).items():
        components.append(Component(type=ComponentType.LIBRARY, name=name, version=lib_version, bom_ref=f"pypi:{name}",
                                    purl=PackageURL(type="pypi", name=name, version=lib_version),
                                    scope=ComponentScope.EXCLUDED,  # built the package, not shipped in it
                                    properties=[Property(name="edgeopt:role", value="build environment")]))
    for name, rt_version, kind in runtime(manifest):
        if rt_version:
            components.append(Component(type=ComponentType(kind), name=name, version=str(rt_version), bom_ref=f"runtime:{name}",
                                        scope=ComponentScope.REQUIRED,
                                        properties=[Property(name="edgeopt:role", value="device runtime")]))
    root = Component(type=ComponentType.APPLICATION, name=package_name, version=version, bom_ref="package",
                     description=f"edgeopt package of {model.get('name')} for {manifest.target.get('name')}")
    content = "".join(f"{name}:{digest}\n" for name, digest in sorted(shipped.items()))
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:edgeopt:sbom:{package_name}:{content}"),
              metadata=BomMetaData(component=root,
                                   properties=[Property(name="edgeopt:version", value=__version__)]))
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    written = json.loads(JsonV1Dot6(bom).output_as_string())
    written["metadata"].pop("timestamp", None)  # optional in CycloneDX; the library stamps "now", which no repeat agrees on
    return json.dumps(written, indent=2) + "\n"

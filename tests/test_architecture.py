"""The layout's promises (docs/ARCHITECTURE.md), checked on the source: packages depend on each
other without cycles, the pipeline names no backend, no module outgrows one screenful of
concepts, and artifact file names are spelled only in build_dir.py."""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import edgeopt
from edgeopt.build_dir import LAYOUT

ROOT = Path(edgeopt.__file__).parent
SOURCES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)
# The device runner runs on a Jetson without edgeopt: it carries its own copies of the names,
# and tests/stages/test_device_runner.py checks they agree with LAYOUT.
SELF_CONTAINED = {"device_runner.py", "device_runtime.py"}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "edgeopt" and (ROOT / parts[1]).is_dir() else None


def package_graph() -> dict[str, set[str]]:
    """Subpackage -> the subpackages it imports (at any depth, lazy imports included)."""
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        source = _package("edgeopt." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module, *(f"{node.module}.{a.name}" for a in node.names)] \
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            graph.setdefault(source, set()).update(p for n in names if (p := _package(n)) not in (None, source))
    return graph


def test_packages_form_no_cycle():
    graph, done, path = package_graph(), set(), []

    def visit(node: str) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        path.append(node)
        for child in sorted(graph.get(node, ())):
            visit(child)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert graph["stages"] >= {"backends"} and "stages" not in graph["backends"]  # the graph is read, not empty


def test_the_pipeline_names_no_backend():
    text = (ROOT / "pipeline.py").read_text().lower()
    # It hands the quantize stage's calibration cache (an artifact LAYOUT names) to the compile stage.
    text = text.replace("layout.tensorrt_calibration_cache", "")
    assert not re.search(r"tensorrt|onnxruntime|\btrt\b", text)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_artifact_names_are_spelled_only_in_build_dir():
    names = {getattr(LAYOUT, f.name) for f in fields(LAYOUT) if isinstance(getattr(LAYOUT, f.name), str)}
    names = {n for n in names if "." in n}  # file names, not folder names
    spelled = {}
    for path in SOURCES:
        if path.name in SELF_CONTAINED or path.name == "build_dir.py":
            continue
        text = path.read_text()
        found = sorted(n for n in names if f'"{n}"' in text or f"'{n}'" in text)
        if found:
            spelled[str(path.relative_to(ROOT))] = found
    assert spelled == {}

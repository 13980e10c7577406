"""docs/ci.md's GitHub Actions workflow is valid for GitHub (check-jsonschema's bundled GitHub
workflow schema, no network) and does what the release needs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO

CHECKER = shutil.which("check-jsonschema")


def _workflow() -> str:
    text = (REPO / "docs" / "ci.md").read_text()
    match = re.search(r"<!-- workflow: \S+ -->\n```yaml\n(.*?)```", text, re.S)
    assert match, "docs/ci.md: no workflow block"
    return match.group(1)


def _check(path) -> subprocess.CompletedProcess:
    return subprocess.run([CHECKER, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHECKER is None, reason="check-jsonschema is not installed (pip install '.[dev]')")
def test_workflow_is_valid_for_github_actions(tmp_path):
    good = tmp_path / "release.yml"
    good.write_text(_workflow())
    result = _check(good)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"  # the checker does reject a workflow GitHub would reject
    broken.write_text(_workflow().replace("runs-on: ubuntu-latest", "run-on: ubuntu-latest", 1))
    assert _check(broken).returncode != 0


def test_workflow_uses_the_matrix_cache_summary_and_uploads():
    workflow = yaml.safe_load(_workflow())
    plan, build = workflow["jobs"]["plan"], workflow["jobs"]["build"]
    assert any("edgeopt matrix" in step.get("run", "") for step in plan["steps"])
    assert any("python -m build" in step.get("run", "") for step in plan["steps"])
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    uses = [step.get("uses", "") for step in build["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)
    cache = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == build["env"]["EDGEOPT_CACHE"]  # the cache actions/cache saves is edgeopt's
    assert any("$GITHUB_STEP_SUMMARY" in step.get("run", "") and step.get("if") == "always()" for step in build["steps"])
    uploads = [s["with"]["path"] for job in (plan, build) for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert any("dist/*.whl" in p for p in uploads) and any("out/packages/*.tar.gz" in p for p in uploads)

"""`edgeopt release`: every (model, target) pair of edgeopt.yaml built in parallel processes,
each packaged, one Markdown summary over all pairs, exit 1 when any gate failed.

Each pair runs `edgeopt.api.build` in its own process (ProcessPoolExecutor with the `spawn`
start method: the parent may already hold torch/OpenMP threads, and forking those can hang the
child). All processes share the stage cache ($EDGEOPT_CACHE): entries appear by atomic rename
and a store never removes a valid entry another process wrote (cache.StageCache.store), so two
pairs that share a stage (one model's export for two targets) at worst both compute it once.
Parallel pairs share the cores, so host latency they measure is slowed by each other (see
docs/ci.md: `--jobs 1` for CPU targets with latency gates). On CI, `edgeopt matrix` splits the
pairs over runners instead: one job per target.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from pydantic import BaseModel

from edgeopt.assemble import slug
from edgeopt.build_dir import LAYOUT, write_bytes_atomic, write_json_atomic
from edgeopt.project import Project, load_project

EXIT_OK, EXIT_GATE_FAILED, EXIT_ERROR = 0, 1, 2
SUMMARY_MD, SUMMARY_JSON = "release.md", "release.json"


class ReleaseResult(BaseModel):
    rows: list[dict]
    markdown: str
    summary_path: Path
    exit_code: int


def _pair_options(project: Project, model: str, target: str, out: Path) -> dict:
    """BuildOptions fields for one pair (plain data: it crosses a process boundary)."""
    entry = project.models[model]
    return {
        "model": project.source(entry), "target": target, "calib": project.path(entry.calib),
        "eval": project.path(entry.eval), "task": entry.task, "prune": entry.prune,
        "out": out / LAYOUT.release_builds / slug(model) / slug(target),
        "latency_seconds": project.options.latency_seconds, "calib_samples": project.options.calib_samples,
        "max_accuracy_drop": project.options.max_accuracy_drop,
    }


def _metric(result: dict, metric: str) -> float | None:
    int8 = result["metrics"]["int8"]
    llm = result["metrics"].get("llm") or {}  # decoder-only LLMs (issue 18): agreement is the greedy agreement
    return {"accuracy": int8.get("accuracy"), "agreement": int8.get("agreement"), "cosine": int8.get("cosine_mean"),
            "perplexity": llm.get("perplexity")}[metric]


def build_pair(model: str, target: str, options: dict, metric: str, packages: Path, version: str | None,
               sign: Path | None = None) -> dict:
    """One pair in a worker process: build, package, and the summary row (never raises)."""
    from edgeopt.errors import EdgeoptError
    from edgeopt.api import BuildOptions, build
    from edgeopt.package.bundle import package

    row = {"model": model, "target": target, "pid": os.getpid(), "started": time.time()}
    try:
        result = build(options=BuildOptions(**options)).to_json()
        packaged = package(Path(result["build_dir"]), packages, version=version, sign=sign)
        row.update(status=result["status"], resolved_target=result["target"]["name"], build_dir=result["build_dir"],
                   int8=result["metrics"]["int8"], gates=result["gates"], engine=result["engine"]["status"],
                   metric=metric, metric_value=_metric(result, metric), package=str(packaged.path),
                   package_sha256=packaged.sha256)
    except EdgeoptError as error:
        row.update(status="error", error=str(error), exit_code=error.exit_code)
    except Exception as error:  # a bug in one pair must not hide the other pairs' results
        row.update(status="error", error=f"internal error: {type(error).__name__}: {error}",
                   traceback=traceback.format_exc(), exit_code=70)
    row["finished"] = time.time()
    return row


def exit_code(rows: list[dict]) -> int:
    """1 when a gate failed, 2 when a pair could not be built (bad input), else 0."""
    if any(r["status"] == "error" for r in rows):
        return max(EXIT_ERROR, *(r.get("exit_code", EXIT_ERROR) for r in rows if r["status"] == "error"))
    return EXIT_GATE_FAILED if any(r["status"] == "gate_failed" for r in rows) else EXIT_OK


def run_release(project_path: Path, out: Path, *, jobs: int | None = None, version: str | None = None,
                models: tuple[str, ...] = (), targets: tuple[str, ...] = (), sign: Path | None = None) -> ReleaseResult:
    from edgeopt.package.release import render_release
    from edgeopt.package.signing import key_id

    if sign is not None:
        key_id(sign)  # a loose or wrong signing key: refused before any pair is built

    project = load_project(project_path)
    pairs = project.pairs(tuple(models), tuple(targets))
    out = Path(out).resolve()
    packages = out / "packages"
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(pairs)))
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(build_pair, m, t, _pair_options(project, m, t, out), project.models[m].metric,
                               packages, version, sign) for m, t in pairs]
        for future in as_completed(futures):
            rows.append(future.result())
    order = {pair: i for i, pair in enumerate(pairs)}
    rows.sort(key=lambda r: order[(r["model"], r["target"])])
    markdown = render_release(rows)
    summary = out / SUMMARY_MD
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(summary, markdown.encode())
    write_json_atomic(out / SUMMARY_JSON, {"rows": rows, "exit_code": exit_code(rows)})
    return ReleaseResult(rows=rows, markdown=markdown, summary_path=summary, exit_code=exit_code(rows))

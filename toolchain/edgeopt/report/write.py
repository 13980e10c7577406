"""Write a report in the requested formats into one folder."""

from __future__ import annotations

from pathlib import Path

from edgeopt.build_dir import LAYOUT, write_bytes_atomic
from edgeopt.errors import BadInput
from edgeopt.report import render_html, render_json, render_junit, render_markdown

FORMATS = {"md": (LAYOUT.report, render_markdown.render), "html": ("report.html", render_html.render),
           "junit": ("report.junit.xml", render_junit.render), "json": ("report.json", render_json.render)}


def write(report: dict, formats: list[str], out: Path) -> list[Path]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise BadInput(f"--format: unknown {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    from edgeopt.ownership import check_may_write, mark

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out is an existing file; the report is a folder (choose another --out)")
    check_may_write(out, [FORMATS[name][0] for name in formats], "report", "--out")
    out.mkdir(parents=True, exist_ok=True)
    mark(out, "report")
    paths = []
    for name in formats:
        filename, render = FORMATS[name]
        write_bytes_atomic(Path(out) / filename, render(report).encode())
        paths.append(Path(out) / filename)
    return paths

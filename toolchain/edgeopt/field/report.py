"""The feedback report in the four formats of `edgeopt report`, by its renderers: the document
keeps the report's schema (verdict + comparisons of rows), so Markdown, HTML, JUnit and JSON
render it unchanged; Markdown and HTML get a field section on top (alerts, and in HTML the
per-tensor PSI and saturation bars and the worst tensor's histograms)."""

from __future__ import annotations

import html
from pathlib import Path

from edgeopt.build_dir import write_bytes_atomic
from edgeopt.errors import BadInput
from edgeopt.report import render_html, render_json, render_junit, render_markdown
from edgeopt.report.write import FORMATS


def _headline(doc: dict) -> str:
    alerts = doc["field"]["alerts"]
    return f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}" + (f": {', '.join(alerts[:6])}" if alerts else "")


def markdown(doc: dict) -> str:
    f = doc["field"]
    t = f["thresholds"]
    head = [f"## edgeopt field feedback: {_headline(doc)}", "",
            f"Build `{f['build_dir']}`, field data `{f['data']}` ({f['samples']} samples). Thresholds: saturation "
            f"{t['max_field_saturation']:.2%}, PSI {t['max_field_psi']:g}, accuracy drop {t['max_accuracy_drop'] * 100:.2f} pts.", ""]
    head += [f"- {note}" for note in f.get("notes", [])] + ([""] if f.get("notes") else [])
    return "\n".join(head) + "\n" + render_markdown.render(doc)


def histogram_svg(title: str, calibration: list[int], field: list[int], width: int = 460, height: int = 200) -> str:
    """Calibration and field shares per bin (below range, the bins, above range)."""
    shares = {}
    for key, counts in (("baseline", calibration), ("current", field)):
        total = float(sum(counts)) or 1.0
        shares[key] = [c / total for c in counts]
    top = max(max(v) for v in shares.values()) or 1.0
    left, bottom, plot_w, plot_h = 30, height - 30, width - 50, height - 60
    bar = plot_w / len(calibration)
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>']
    for key, values in shares.items():
        for i, value in enumerate(values):
            h = plot_h * value / top
            parts.append(f'<rect x="{left + i * bar:.1f}" y="{bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{render_html.COLORS[key]}" fill-opacity="0.55"/>')
    parts.append(f'<text x="{width / 2}" y="{height - 18}" text-anchor="middle" font-size="11">share per bin over the '
                 'calibrated range (first/last bar: outside it)</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 5}" text-anchor="middle" font-size="11">blue: calibration, '
                 'orange: field</text>')
    return "".join(parts) + "</svg>"


def page(doc: dict) -> str:
    stats = doc["field"]["stats"]["tensors"]
    rows = [r for c in doc["comparisons"][:1] for r in c["rows"] if r.get("tensor") and r["current"] is not None]
    psi = sorted((r for r in rows if r["metric"].startswith("psi")), key=lambda r: -r["current"])[:12]
    sat = sorted((r for r in rows if r["metric"].startswith("saturation")), key=lambda r: -r["current"])[:12]
    color = lambda r: "#c0392b" if r["verdict"] == "regressed" else "#4c72b0"  # noqa: E731
    extra = [f"<h1>edgeopt field feedback: {html.escape(_headline(doc))}</h1><div>",
             render_html.bars_svg("PSI vs calibration (worst tensors)", [(r["tensor"], r["current"], color(r)) for r in psi], height=380),
             render_html.bars_svg("saturation (worst tensors)", [(r["tensor"], r["current"], color(r)) for r in sat], height=380)]
    if psi:
        worst = psi[0]["tensor"]
        calib = doc["field"]["calibration_histograms"].get(worst)
        if calib and worst in stats:
            extra.append(histogram_svg(f"{worst}: calibration vs field", calib, stats[worst]["histogram"]))
    extra.append("</div>")
    base = render_html.render(doc)
    return base.replace("<body>\n", "<body>\n" + "".join(extra) + "\n", 1)


RENDER = {"md": markdown, "html": page, "junit": render_junit.render, "json": render_json.render}


def check_out(formats: list[str], out: Path) -> None:
    """Bad --format or --out, refused before any work."""
    unknown = [f for f in formats if f not in RENDER]
    if unknown or not formats:
        raise BadInput(f"--format: unknown {', '.join(unknown) or '(none)'} (choose from {', '.join(RENDER)})")
    from edgeopt.ownership import check_may_write

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out is an existing file; the report is a folder (choose another --out)")
    check_may_write(out, [FORMATS[name][0] for name in formats], "report", "--out")


def write(doc: dict, formats: list[str], out: Path) -> list[Path]:
    """The report files in `out` (the names `edgeopt report` uses), each written atomically; only
    into a folder edgeopt made or an empty one (edgeopt.ownership)."""
    from edgeopt.ownership import mark

    check_out(formats, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mark(out, "report")
    paths = []
    for name in formats:
        path = out / FORMATS[name][0]
        write_bytes_atomic(path, RENDER[name](doc).encode())
        paths.append(path)
    return paths

"""The report as one self-contained HTML page: tables and inline SVG plots, no script, no CDN."""

from __future__ import annotations

import html

import numpy as np

from edgeopt.report.render_markdown import change

COLORS = {"baseline": "#4c72b0", "current": "#dd8452"}
VERDICT_COLORS = {"regressed": "#c0392b", "improved": "#1e8449", "unchanged": "#555", "not judged": "#b9770e"}
CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:980px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.warn{background:#fdebd0;border-left:4px solid #b9770e;padding:6px 10px}
.verdict{font-weight:bold}svg{background:#fafafa;border:1px solid #ddd;margin:4px 8px 4px 0}"""


def _verdict(v: str) -> str:
    return f'<span class="verdict" style="color:{VERDICT_COLORS[v]}">{html.escape(v)}</span>'


def latency_svg(title: str, baseline: list[float], current: list[float], width: int = 460, height: int = 220) -> str:
    """Histograms of baseline and current single-run times. The axis ends where the bulk ends
    (third quartile + 3 IQR, at most the 99th percentile): a shared host's rare multi-millisecond
    stalls would otherwise squeeze every run into one bar. Slower runs land in the last bar."""
    both = np.concatenate([baseline, current])
    q1, q3 = np.percentile(both, [25, 75])
    low, high = float(np.min(both)), float(min(np.percentile(both, 99), q3 + 3 * (q3 - q1)))
    beyond = int((both > high).sum())
    if high <= low:
        high = low + 1e-6
    edges = np.linspace(low, high, 41)
    left, bottom, plot_w, plot_h = 50, height - 40, width - 70, height - 70
    counts = {k: np.histogram(np.clip(v, low, high), edges)[0] / len(v) for k, v in (("baseline", baseline), ("current", current))}
    top = max(float(c.max()) for c in counts.values()) or 1.0
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#333"/>']
    bar = plot_w / 40
    for key, c in counts.items():
        for i, value in enumerate(c):
            h = plot_h * value / top
            parts.append(f'<rect x="{left + i * bar:.1f}" y="{bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[key]}" fill-opacity="0.55"/>')
        med = float(np.median(baseline if key == "baseline" else current))
        x = left + plot_w * (min(med, high) - low) / (high - low)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom - plot_h}" stroke="{COLORS[key]}" '
                     'stroke-width="2" stroke-dasharray="4 2"/>')
    for frac in (0, 0.5, 1):
        parts.append(f'<text x="{left + plot_w * frac:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">'
                     f'{low + (high - low) * frac:.3f}</text>')
    slower = f"; {beyond} slower runs in the last bar" if beyond else ""
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" font-size="11">ms per run '
                 f'(dashed: medians{slower})</text>')
    for i, key in enumerate(COLORS):
        parts.append(f'<rect x="{left + plot_w - 110}" y="{28 + i * 16}" width="10" height="10" fill="{COLORS[key]}"/>'
                     f'<text x="{left + plot_w - 95}" y="{37 + i * 16}" font-size="11">{key} (n={len(baseline if key == "baseline" else current)})</text>')
    return "".join(parts) + "</svg>"


def bars_svg(title: str, items: list[tuple[str, float, str]], width: int = 460, height: int = 220, unit: str = "") -> str:
    """Horizontal bars: (label, value, color)."""
    if not items:
        return ""
    height = min(height, 44 + 26 * len(items))
    top = max(abs(v) for _, v, _ in items) or 1.0
    row = min(28, (height - 40) / len(items))
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>']
    for i, (label, value, color) in enumerate(items):
        y = 28 + i * row
        w = (width - 230) * abs(value) / top
        parts.append(f'<text x="150" y="{y + row * 0.65:.1f}" text-anchor="end" font-size="11">{html.escape(label[:24])}</text>'
                     f'<rect x="155" y="{y:.1f}" width="{w:.1f}" height="{row * 0.75:.1f}" fill="{color}"/>'
                     f'<text x="{160 + w:.1f}" y="{y + row * 0.65:.1f}" font-size="11">{value:.4g}{unit}</text>')
    return "".join(parts) + "</svg>"


def _comparison(c: dict) -> str:
    out = [f"<h2>{html.escape(c['name'])}: {_verdict(c['verdict'])}</h2>"]
    for warning in c["environment_warnings"]:
        out.append(f'<p class="warn">Unsafe comparison: {html.escape(warning)}</p>')
    out.append("<table><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th><th>verdict</th></tr>")
    for row in c["rows"]:
        cells = ["n/a" if row[k] is None else f"{row[k]:.4g}" for k in ("baseline", "current")]
        out.append(f"<tr><td>{html.escape(row['metric'])}</td><td>{cells[0]}</td><td>{cells[1]}</td>"
                   f"<td>{html.escape(change(row))}</td><td>{_verdict(row['verdict'])}</td></tr>")
    out.append("</table><div>")
    for row in c["rows"]:
        if row.get("samples"):
            out.append(latency_svg(f"{row['metric']}: baseline vs current", row["samples"]["baseline"], row["samples"]["current"]))
    accuracy = [(f"{r['metric']} {side}", r[side], "#4c72b0" if side == "baseline" else "#dd8452")
                for r in c["rows"] if r["kind"] == "accuracy" and r["metric"].startswith("accuracy")
                for side in ("baseline", "current") if r[side] is not None]
    out.append(bars_svg("accuracy by precision", accuracy))
    sensitivity = c.get("sensitivity") or []
    if sensitivity and sensitivity[0].get("drop_if_float") is not None:
        out.append(bars_svg("per-layer sensitivity (accuracy drop if float)",
                            [(r["node"], r["drop_if_float"], "#8172b2") for r in sensitivity[:12]], height=380))
    elif sensitivity:
        out.append(bars_svg("per-layer sensitivity (relative output error the layer adds)",
                            [(r["node"], r.get("added_error") or 0.0, "#8172b2") for r in sensitivity[:12]], height=380))
    out.append("</div>")
    return "\n".join(out)


def render(report: dict) -> str:
    body = [f"<h1>edgeopt regression report: {_verdict(report['verdict'])}</h1>"]
    if len(report["comparisons"]) > 1:
        body.append("<table><tr><th>build</th><th>verdict</th><th>INT8 latency change</th></tr>")
        for c in report["comparisons"]:
            row = next((r for r in c["rows"] if r["metric"] == "latency_p50_int8"), None)
            body.append(f"<tr><td>{html.escape(c['name'])}</td><td>{_verdict(c['verdict'])}</td>"
                        f"<td>{html.escape(change(row)) if row else 'n/a'}</td></tr>")
        body.append("</table>")
    body += [_comparison(c) for c in report["comparisons"]]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>edgeopt report</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

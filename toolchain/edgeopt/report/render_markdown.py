"""The report as Markdown: a pull-request comment, or $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

ICON = {"regressed": "🔴 regressed", "improved": "🟢 improved", "unchanged": "⚪ unchanged", "not judged": "⚠️ not judged"}


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def change(row: dict) -> str:
    """`1.102x [1.081, 1.125]` for latency, `-0.40 pts` for accuracy."""
    if row["kind"] == "latency" and "ratio" in row:
        ci = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if row.get("ci_low") is not None else ""
        return f"{row['ratio']:.3f}x{ci}"
    if "delta" in row:
        return f"{row['delta'] * 100:+.2f} pts"
    return row.get("reason", "")


def render(report: dict) -> str:
    lines = [f"## edgeopt regression report: {ICON[report['verdict']]}", ""]
    comparisons = report["comparisons"]
    if len(comparisons) > 1:
        lines += ["| build | verdict | latency INT8 (current / baseline) |", "|---|---|---|"]
        for c in comparisons:
            row = next((r for r in c["rows"] if r["metric"] == "latency_p50_int8"), None)
            lines.append(f"| {c['name']} | {ICON[c['verdict']]} | {change(row) if row else 'n/a'} |")
        lines.append("")
    for c in comparisons:
        lines.append(f"### {c['name']}: {ICON[c['verdict']]}")
        lines.append("")
        for warning in c["environment_warnings"]:
            lines.append(f"> ⚠️ **Unsafe comparison**: {warning}")
        if c["environment_warnings"]:
            lines.append("")
        tol = c["tolerances"]
        lines += [f"Tolerances: latency {tol['latency']:.0%}, accuracy {tol['accuracy'] * 100:.2f} pts. "
                  "Latency change = current / baseline median, 95% bootstrap CI.", "",
                  "| metric | baseline | current | change | verdict |", "|---|---|---|---|---|"]
        for row in c["rows"]:
            lines.append(f"| {row['metric']} | {_num(row['baseline'])} | {_num(row['current'])} | {change(row)} | "
                         f"{ICON[row['verdict']]} |")
        lines.append("")
    return "\n".join(lines)

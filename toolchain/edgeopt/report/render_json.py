"""The report as JSON for machines (schema_version in report.compare.SCHEMA_VERSION)."""

from __future__ import annotations

import json


def render(report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"

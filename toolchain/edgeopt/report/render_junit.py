"""The report as JUnit XML: each metric of each build is a test case; a regression is a failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgeopt.report.render_markdown import change


def render(report: dict) -> str:
    suites = ET.Element("testsuites", name="edgeopt")
    for c in report["comparisons"]:
        rows = c["rows"]
        suite = ET.SubElement(suites, "testsuite", name=c["name"], tests=str(len(rows)),
                              failures=str(sum(r["verdict"] == "regressed" for r in rows)),
                              skipped=str(sum(r["verdict"] == "not judged" for r in rows)))
        for row in rows:
            case = ET.SubElement(suite, "testcase", classname=c["name"], name=row["metric"])
            if row["verdict"] == "regressed":
                ET.SubElement(case, "failure", message=f"regressed: {change(row)}").text = (
                    f"baseline {row['baseline']} current {row['current']}")
            elif row["verdict"] == "not judged":
                ET.SubElement(case, "skipped", message=row.get("reason", "not judged"))
            else:
                ET.SubElement(case, "system-out").text = f"{row['verdict']}: {change(row)}"
        for warning in c["environment_warnings"]:
            ET.SubElement(suite, "system-err").text = f"unsafe comparison: {warning}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

"""The gate's verdict as a terminal table, JSON, JUnit XML (the Jenkins/Ant dialect that
GitHub, GitLab and Jenkins read) and Markdown for a CI job summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # noqa: S405 - we write XML, never parse untrusted input
from datetime import datetime, timezone

from autotune.gate.run import GateReport

EXIT_MEANING = {0: "pass", 1: "regression", 2: "usage or setup error", 3: "inconclusive"}


def _estimate(signal_name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if signal_name == "throughput":
        return f"x{value:.3f}"
    if signal_name in ("correctness", "quality"):
        return f"{value:.0%} same"
    if signal_name == "mean accepted length":
        return f"{value:+.1%}"
    return f"{value:+.3f}"


def table(report: GateReport) -> str:
    lines = [f"gate ({report.mode}): {report.setup}", f"  against {report.against}"]
    lines += [f"  terms changed: {d}" for d in report.differences]
    header = f"  {'signal':<21} {'verdict':<15} {'estimate':>10}  detail"
    lines += [header, "  " + "-" * (len(header) - 2)]
    for signal in report.signals:
        lines.append(f"  {signal.name:<21} {signal.verdict:<15} "
                     f"{_estimate(signal.name, signal.estimate):>10}  {signal.detail}")
    lines += [f"  note: {n}" for n in report.notes]
    lines.append(f"result: {report.verdict.upper()} (exit {report.exit_code}: "
                 f"{EXIT_MEANING[report.exit_code]}); {report.launches} launches in "
                 f"{report.seconds:.0f} s")
    return "\n".join(lines)


def to_json(report: GateReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def junit(report: GateReport) -> str:
    """One test suite, one test case per signal: a regression is a <failure>, an
    inconclusive signal a <failure> or <skipped> as ``on_inconclusive`` decides (exit 3 reads
    as skipped, so the job's own exit code carries it), not-applicable is <skipped>."""
    failures = skipped = 0
    suite = ET.Element("testsuite", name="autotune gate", timestamp=datetime.now(
        timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), hostname="localhost",
        time=f"{report.seconds:.3f}")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("setup", report.setup), ("against", report.against),
                        ("mode", report.mode), ("exit_code", str(report.exit_code))):
        ET.SubElement(properties, "property", name=name, value=value)
    for signal in report.signals:
        case = ET.SubElement(suite, "testcase", name=signal.name, classname="autotune.gate",
                             time="0")
        failing = signal.verdict == "regression" or (
            signal.verdict == "inconclusive" and report.on_inconclusive == "fail")
        if failing:
            failures += 1
            failure = ET.SubElement(case, "failure", message=signal.detail, type=signal.verdict)
            failure.text = signal.detail
        elif signal.verdict in ("inconclusive", "not-applicable"):
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{signal.verdict}: {signal.detail}")
    ET.SubElement(suite, "system-out").text = table(report)
    ET.SubElement(suite, "system-err").text = ""
    suite.set("tests", str(len(report.signals)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def markdown(report: GateReport) -> str:
    icon = {"pass": "✅", "regression": "❌", "inconclusive": "⚠️", "not-applicable": "➖"}
    lines = [f"### autotune gate: {report.verdict.upper()} (exit {report.exit_code})", "",
             f"`{report.setup}` against {report.against}", "",
             "| signal | verdict | estimate | detail |", "|---|---|---|---|"]
    for signal in report.signals:
        detail = signal.detail.replace("|", "\\|")
        lines.append(f"| {signal.name} | {icon[signal.verdict]} {signal.verdict} | "
                     f"{_estimate(signal.name, signal.estimate)} | {detail} |")
    lines += [""] + [f"- terms changed: {d}" for d in report.differences]
    lines += [f"- {n}" for n in report.notes]
    lines.append(f"- {report.launches} launches in {report.seconds:.0f} s")
    return "\n".join(lines) + "\n"

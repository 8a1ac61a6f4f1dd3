"""JUnit XML for CI reporters: one testsuite, one testcase per scenario.

Every testcase carries ``name`` (the scenario ID) and ``classname`` (``pec.<family>``), which
reporters need (h2spec's JUnit lacked ``name`` and broke them). The mapping:

- FAIL  -> ``<failure>`` citing the failing requirement IDs and findings;
- XPASS -> ``<failure>`` (an unexpected pass fails CI until the expectation is removed);
- ERROR -> ``<error>`` (the harness could not run it: not blamed on the target);
- SKIP  -> ``<skipped>``; REVIEW -> ``<skipped>`` too (nothing a wire can judge); BLOCKED ->
  ``<skipped>`` with the precondition that failed (not exercised);
- XFAIL -> passes, with ``<system-out>`` "expected failure: <reason>";
- PASS, WARN, INFO -> pass; warnings are listed in ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from .model import UNEXPECTED

SUITE_NAME = "pec-conformance"

# Characters XML 1.0 cannot carry at all (a hostile message may put them in a finding).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def describe_finding(finding: Mapping[str, Any]) -> str:
    """One finding on one line: ``[FAIL] ENV-03, ENV-04 check: message (expected: x; actual: y)``."""
    ids = ", ".join(finding["requirements"]) or "-"
    line = f"[{finding['verdict']}] {ids} {finding['check']}: {finding['message']}"
    extra = [f"{k}: {finding[k]}" for k in ("expected", "actual", "decision", "evidence") if finding.get(k)]
    if finding.get("expected_verdict"):
        extra.append(f"expected verdict: {finding['expected_verdict']}"
                     + (f" ({finding['reason']})" if finding.get("reason") else ""))
    return _one_line(line) + (f" ({'; '.join(_one_line(e, 200) for e in extra)})" if extra else "")


def failing_requirements(scenario: Mapping[str, Any], verdicts: frozenset[str] = UNEXPECTED) -> list[str]:
    """Requirement IDs of the scenario with one of ``verdicts``: from its requirement map, then
    from its findings, without repeats, in first-seen order."""
    ids = [rid for rid, v in scenario["requirements"].items() if v in verdicts]
    for finding in scenario["findings"]:
        if finding["verdict"] in verdicts:
            ids.extend(finding["requirements"])
    return list(dict.fromkeys(ids))


def _problem_findings(scenario: Mapping[str, Any], verdicts: set[str]) -> list[Mapping[str, Any]]:
    return [f for f in scenario["findings"] if f["verdict"] in verdicts]


def _testcase(parent: ET.Element, scenario: Mapping[str, Any]) -> str:
    """Add the testcase of a scenario; returns its JUnit outcome (passed/failure/error/skipped)."""
    case = ET.SubElement(parent, "testcase", {
        "name": _clean(scenario["id"]),
        "classname": _clean(f"pec.{scenario['family']}"),
        "time": _seconds(scenario["duration_s"]),
    })
    verdict = scenario["verdict"]
    title = _one_line(scenario["title"], 200)
    out_lines = [f"{scenario['id']}: {title}", f"verdict: {verdict}"]
    outcome = "passed"
    if verdict in ("FAIL", "XPASS"):
        outcome = "failure"
        ids = failing_requirements(scenario)
        findings = _problem_findings(scenario, {"FAIL", "XPASS"})
        if verdict == "XPASS":
            expected = scenario.get("expected") or "FAIL"
            head = f"unexpected pass: expected {expected}"
            if scenario.get("reason"):
                head += f" ({_one_line(scenario['reason'], 200)})"
            head += ", but it passed; remove the expectation"
        else:
            head = f"FAIL {', '.join(ids) or '(no requirement cited)'}"
            if findings:
                head += f": {_one_line(findings[0]['message'], 200)}"
        element = ET.SubElement(case, "failure", {"message": _clean(head), "type": verdict})
        body = [f"requirements: {', '.join(ids) or '-'}"] + [describe_finding(f) for f in findings]
        element.text = _clean("\n".join(body))
    elif verdict == "ERROR":
        outcome = "error"
        error = scenario.get("error") or next(
            (f["message"] for f in scenario["findings"] if f["verdict"] == "ERROR"), "harness error")
        element = ET.SubElement(case, "error", {"message": _clean(_one_line(error, 300)), "type": "ERROR"})
        body = [error] + [describe_finding(f) for f in _problem_findings(scenario, {"ERROR"})]
        element.text = _clean("\n".join(body))
    elif verdict in ("SKIP", "REVIEW", "BLOCKED"):
        outcome = "skipped"
        if verdict in ("SKIP", "BLOCKED"):
            why = next((f["message"] for f in scenario["findings"] if f["verdict"] == verdict), "not run")
            label = "skipped" if verdict == "SKIP" else "blocked (not exercised)"
            message = f"{label}: {_one_line(why, 300)}"
        else:
            message = "needs review: evidence a wire cannot show (audit-only)"
        ET.SubElement(case, "skipped", {"message": _clean(message)})
    elif verdict == "XFAIL":
        reason = scenario.get("reason") or "no reason given"
        out_lines.append(f"expected failure: {reason}")
        out_lines += [describe_finding(f) for f in scenario["findings"] if f["verdict"] in ("XFAIL", "FAIL")]
    warnings = [describe_finding(f) for f in scenario["findings"] if f["verdict"] == "WARN"]
    if warnings:
        out_lines.append("warnings:")
        out_lines += warnings
    if scenario["evidence"]:
        out_lines.append(f"evidence: {len(scenario['evidence'])} files under {_evidence_root(scenario)}")
    ET.SubElement(case, "system-out").text = _clean("\n".join(out_lines))
    return outcome


def _evidence_root(scenario: Mapping[str, Any]) -> str:
    first = scenario["evidence"][0]
    return first.rsplit("/", 1)[0] + "/" if "/" in first else "./"


def to_junit(report: Mapping[str, Any]) -> str:
    """The JUnit XML of a report (a ``<testsuites>`` holding one ``<testsuite>``), as text."""
    scenarios = report["scenarios"]
    run = report["run"]
    root = ET.Element("testsuites", {"name": SUITE_NAME})
    suite = ET.SubElement(root, "testsuite", {
        "name": SUITE_NAME,
        "tests": str(len(scenarios)),
        "failures": "0",
        "errors": "0",
        "skipped": "0",
        "time": _seconds(run["duration_s"]),
        "timestamp": _clean(run["started"]),
        "hostname": _clean(run["host"] or "localhost"),
    })
    properties = ET.SubElement(suite, "properties")
    target = report["target"]
    for name, value in (
        ("suite.version", report["suite"]["version"]),
        ("run.id", run["id"]),
        ("target.name", target["name"]),
        ("target.kind", target["kind"]),
        ("target.profile", target["profile"] or ""),
        ("target.faults", ",".join(target["faults"])),
        ("exit_code", report["summary"]["exit_code"]),
        ("unexpected", report["summary"]["unexpected"]),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    tally = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
    for scenario in scenarios:
        tally[_testcase(suite, scenario)] += 1
    for element in (root, suite):
        element.set("tests", str(len(scenarios)))
        element.set("failures", str(tally["failure"]))
        element.set("errors", str(tally["error"]))
        element.set("skipped", str(tally["skipped"]))
        element.set("time", _seconds(run["duration_s"]))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

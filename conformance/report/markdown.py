"""A short Markdown summary, sized for a merge-request comment (about 60 lines at most).

One line with the result, a table of counts, then the scenarios that need someone (FAIL, ERROR,
XPASS) with their requirement IDs and first finding, and on one line the scenarios BLOCKED (not
exercised). Texts coming from the target (messages) are
put on one line, cut, and escaped so they cannot break the table or inject markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .junit import failing_requirements
from .model import UNEXPECTED, VERDICTS, counts

MAX_LINES = 60

RESULT = {
    0: "PASS: nothing unexpected",
    1: "FAIL: conformance failures",
    2: "ERROR: the harness could not complete the run",
}

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def md_text(text: Any, limit: int = 160) -> str:
    """Plain text made safe for one Markdown line (table cell or list item)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text: Any, limit: int = 80) -> str:
    """Inline code that survives any backticks in ``text``."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _target_line(report: Mapping[str, Any]) -> str:
    target = report["target"]
    what = target["kind"]
    if target["faults"]:
        what += ", faults: " + ", ".join(md_code(f, 40) for f in target["faults"])
    elif target["profile"]:
        what += " " + md_code(target["profile"], 60)
    return f"{md_code(target['name'], 60)} ({what})"


def _problem_line(scenario: Mapping[str, Any]) -> str:
    verdict = scenario["verdict"]
    ids = failing_requirements(scenario) or list(scenario["requirements"])
    label = "unexpected pass" if verdict == "XPASS" else verdict
    line = f"- **{label}** {md_code(scenario['id'])}"
    if ids:
        shown = ", ".join(ids[:6]) + (f" +{len(ids) - 6}" if len(ids) > 6 else "")
        line += f" ({shown})"
    if verdict == "XPASS":
        note = f"expected {scenario.get('expected') or 'FAIL'}"
        if scenario.get("reason"):
            note += f" ({scenario['reason']})"
        line += f": {md_text(note + ', but it passed: remove the expectation')}"
    elif verdict == "ERROR" and scenario.get("error"):
        line += f": {md_text(scenario['error'])}"
    else:
        first = next((f for f in scenario["findings"] if f["verdict"] in UNEXPECTED), None)
        if first is not None:
            line += f": {md_text(first['message'])}"
    return line


def to_markdown(report: Mapping[str, Any], max_lines: int = MAX_LINES) -> str:
    """The merge-request comment for a report (at most ``max_lines`` lines)."""
    summary = report["summary"]
    code = summary["exit_code"]
    scenarios = report["scenarios"]
    result = RESULT.get(code, f"exit code {code}")
    lines = [
        f"**pec-conformance {md_text(report['suite']['version'], 30)}**: **{result}** "
        f"(exit code {code}) against {_target_line(report)}: "
        f"{summary['unexpected']} of {len(scenarios)} scenarios unexpected.",
        "",
    ]
    table = {what: counts(report, what) for what in ("scenarios", "requirements", "findings")}
    shown = [v for v in VERDICTS if any(table[what][v] for what in table)] or ["PASS"]
    lines.append("| | " + " | ".join(shown) + " |")
    lines.append("|---|" + "---:|" * len(shown))
    for what, row in table.items():
        lines.append(f"| {what} | " + " | ".join(str(row[v]) for v in shown) + " |")
    problems = [s for s in scenarios if s["verdict"] in UNEXPECTED]
    problems.sort(key=lambda s: VERDICTS.index(s["verdict"]))
    xfail = sum(1 for s in scenarios if s["verdict"] == "XFAIL")
    stopped = report["run"].get("stopped")
    footer = [
        "",
        *([f"**Stopped early**: {md_code(stopped, 120)}; the scenarios not finished are BLOCKED (not run).", ""]
          if stopped else []),
        f"Run {md_code(report['run']['id'], 60)}, {report['run']['duration_s']:.0f} s; "
        + (f"{xfail} expected failure{'s' if xfail > 1 else ''} (XFAIL) not listed; " if xfail else "")
        + "details in `report.html`, data in `report.json`.",
    ]
    if problems:
        lines += ["", f"**Needs attention** ({len(problems)}):", ""]
        room = max_lines - len(lines) - len(footer) - (2 if any(s["verdict"] == "BLOCKED" for s in scenarios) else 0)
        if len(problems) > room:
            listed, rest = problems[: max(room - 1, 0)], len(problems) - max(room - 1, 0)
        else:
            listed, rest = problems, 0
        lines += [_problem_line(s) for s in listed]
        if rest:
            lines.append(f"- ... and {rest} more")
    blocked = [s["id"] for s in scenarios if s["verdict"] == "BLOCKED"]
    if blocked:  # not a failure, but not a pass either: say what went unexercised, on one line
        shown = ", ".join(md_code(sid, 50) for sid in blocked[:8]) + (f" +{len(blocked) - 8}" if len(blocked) > 8 else "")
        lines += ["", f"**Blocked** (not exercised: a precondition failed): {shown}"]
    lines += footer
    return "\n".join(lines) + "\n"

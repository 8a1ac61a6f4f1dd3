"""Render a report: ``report.json`` (canonical), ``report.html``, ``junit.xml`` and ``summary.md``.

Every renderer is a pure function of the report dict (``to_json``, ``to_html``, ``to_junit``,
``to_markdown``); ``write_reports`` writes all four into one folder. Evidence paths in a report are
relative to that folder, so the links in ``report.html`` work wherever the folder is copied (a CI
artifact, a zip sent to a provider).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .junit import to_junit
from .markdown import RESULT, to_markdown
from .model import UNEXPECTED, VERDICTS, ReportError, counts, validate_report
from .sequence import evidence_href, format_offset, layout

__all__ = ["FILES", "to_html", "to_json", "to_junit", "to_markdown", "write_reports"]

#: What ``write_reports`` writes, by key.
FILES: dict[str, str] = {
    "json": "report.json",
    "html": "report.html",
    "junit": "junit.xml",
    "markdown": "summary.md",
}

TEMPLATE = "report.html.j2"


def to_json(report: Mapping[str, Any]) -> str:
    """The canonical ``report.json`` text: the model's own key order, indent 2, UTF-8 as is."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("conformance.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return format_offset(seconds)[1:]


def _matrix(report: Mapping[str, Any]) -> dict:
    """Requirement x scenario: the verdict each scenario gave each requirement.

    Audit-only requirements show REVIEW (a wire cannot judge them) in their verdict column and in
    every cell of a scenario that touches them. Requirements judged by a scenario but missing from
    the report's requirement list still get a row, so nothing judged is hidden.
    """
    scenarios = report["scenarios"]
    listed = list(report["requirements"])
    known = {r["id"] for r in listed}
    extra = sorted({rid for s in scenarios for rid in s["requirements"]} - known)
    rows = []
    for req in listed + [{"id": rid, "level": "", "statement": "(not in the report's requirement list)",
                          "audit_only": False, "long_timer": False, "verdict": None, "scenarios": []}
                         for rid in extra]:
        cells = []
        for scenario in scenarios:
            verdict = scenario["requirements"].get(req["id"])
            cited = verdict is not None or scenario["id"] in req["scenarios"]
            if req["audit_only"] and cited:
                verdict = "REVIEW"
            cells.append({"verdict": verdict, "cited": cited, "scenario": scenario["id"]})
        shown = "REVIEW" if req["audit_only"] else req["verdict"]
        rows.append({**req, "shown": shown, "cells": cells})
    return {"columns": [{"id": s["id"], "verdict": s["verdict"]} for s in scenarios], "rows": rows}


def _scenario_view(scenario: Mapping[str, Any]) -> dict:
    bad_evidence = {f["evidence"] for f in scenario["findings"] if f["verdict"] in UNEXPECTED and f["evidence"]}
    findings = sorted(
        ({**f, "href": evidence_href(f["evidence"]), "problem": f["verdict"] in UNEXPECTED}
         for f in scenario["findings"]),
        key=lambda f: VERDICTS.index(f["verdict"]),
    )
    return {
        **scenario,
        "anchor": f"scenario-{scenario['id']}",
        "problem": scenario["verdict"] in UNEXPECTED,
        "duration": _duration(scenario["duration_s"]),
        "diagram": layout(scenario["events"], bad_evidence),
        "findings_view": findings,
        "finding_counts": {v: n for v in VERDICTS
                           if (n := sum(1 for f in scenario["findings"] if f["verdict"] == v))},
        "requirement_list": sorted(scenario["requirements"].items()),
        "evidence_links": [{"path": p, "href": evidence_href(p)} for p in scenario["evidence"]],
    }


def html_context(report: Mapping[str, Any]) -> dict:
    """Everything the HTML template reads, computed from the report (no logic in the template)."""
    summary = report["summary"]
    scenarios = [_scenario_view(s) for s in report["scenarios"]]
    return {
        "report": report,
        "verdicts": VERDICTS,
        "counts": {what: counts(report, what) for what in ("scenarios", "requirements", "findings")},
        "result": RESULT.get(summary["exit_code"], f"exit code {summary['exit_code']}"),
        "result_class": {0: "PASS", 1: "FAIL", 2: "ERROR"}.get(summary["exit_code"], "ERROR"),
        "run_duration": _duration(report["run"]["duration_s"]),
        "scenarios": scenarios,
        "present_verdicts": [v for v in VERDICTS if any(s["verdict"] == v for s in scenarios)],
        "xpass": [s for s in scenarios if s["verdict"] == "XPASS"],
        "matrix": _matrix(report),
    }


def to_html(report: Mapping[str, Any]) -> str:
    """``report.html``: one self-contained page (inline CSS and SVG, readable without JavaScript)."""
    return _environment().get_template(TEMPLATE).render(html_context(report))


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_reports(report: Mapping[str, Any], out_dir: Path, *, validate: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.html``, ``junit.xml`` and ``summary.md`` into ``out_dir``.

    Returns their paths by key (``json``, ``html``, ``junit``, ``markdown``). ``report.json`` is
    written first and always, so the data of a run is never lost; when ``validate`` is true and the
    report breaks the schema, ReportError (listing why) is raised before the other three are
    rendered from it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}
    _write_text(paths["json"], to_json(report))
    if validate:
        errors = validate_report(report)
        if errors:
            raise ReportError(f"{paths['json']}: not a valid report; html, junit and markdown not written", errors)
    _write_text(paths["html"], to_html(report))
    _write_text(paths["junit"], to_junit(report))
    _write_text(paths["markdown"], to_markdown(report))
    return paths

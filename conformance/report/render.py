"""Render a report: ``report.json`` (canonical), ``report.html``, ``junit.xml`` and ``summary.md``.

Every renderer is a pure function of the report dict (``to_json``, ``to_html``, ``to_junit``,
``to_markdown``); ``write_reports`` writes all four into one folder. Evidence paths in a report are
relative to that folder, so the links in ``report.html`` work wherever the folder is copied (a CI
artifact, a zip sent to a provider).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from ..catalogue import (
    DOCS_DECISIONS,
    DOCS_REQUIREMENTS,
    LEVEL_MEANINGS,
    anchor,
    load_catalogue,
    load_decisions,
)
from .diff import stable_text
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
    """The canonical ``report.json`` text: the model's own key order, indent 1 (a default run's report is
    thousands of findings: one space per level keeps it readable and a sixth smaller), UTF-8 as is."""
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n"


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


#: What the triage at the top lists: a requirement someone must look at.
ATTENTION: tuple[str, ...] = ("FAIL", "ERROR", "XPASS", "BLOCKED")

#: One letter per verdict for the matrix cells (the colour says the rest; PASS is a plain green cell).
CELL: dict[str, str] = {"FAIL": "F", "ERROR": "E", "XPASS": "X", "WARN": "W", "XFAIL": "x", "BLOCKED": "B",
                        "PASS": "", "REVIEW": "R", "INFO": "i", "SKIP": "s"}

#: Findings shown per requirement in the triage; the rest are one click away in the scenario.
TRIAGE_FINDINGS = 4

#: Where the generated documentation lives in a source checkout (``docs/`` beside the package).
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _rank(verdict: str | None) -> int:
    """Sort key: most severe first, PASS after every other verdict, nothing at all last."""
    if verdict is None:
        return len(VERDICTS) + 1
    if verdict == "PASS":
        return len(VERDICTS)
    return VERDICTS.index(verdict)


class _Links:
    """Hrefs of requirement and decision IDs: the entry in docs/ when the docs folder is known, otherwise
    the requirement's matrix row and the decision's paragraph on this page."""

    def __init__(self, docs: str | None) -> None:
        self.docs = docs

    def req(self, rid: str) -> str:
        if self.docs is not None and rid in load_catalogue():
            return f"{self.docs}{DOCS_REQUIREMENTS}#{anchor(rid)}"
        return f"#requirement-{rid}"

    def dec(self, did: str) -> str:
        if self.docs is not None and did in load_decisions():
            return f"{self.docs}{DOCS_DECISIONS}#{anchor(did)}"
        return f"#decision-{did}"

    def text(self, text: str | None) -> Markup:
        """``text`` escaped, with every requirement or decision ID in it linked to its entry."""
        def one(match: re.Match[str]) -> str:
            ident = match.group(0)
            if ident in load_decisions():
                return f'<a class="rid" href="{escape(self.dec(ident))}">{ident}</a>'
            if ident in load_catalogue():
                return f'<a class="rid" href="{escape(self.req(ident))}">{ident}</a>'
            return ident

        return Markup(_ID.sub(one, str(escape(text or ""))))


#: A requirement (FMT-04) or decision (D33) ID inside free text.
_ID = re.compile(r"\b(?:[A-Z]{3}-\d{2}|D\d{1,2})\b")


def _matrix(report: Mapping[str, Any], scenario_order: list[str]) -> dict:
    """Requirement x scenario: the verdict each scenario gave each requirement, rows needing attention
    first (most severe first, PASS rows last), columns in the order of the scenario list.

    Audit-only requirements show REVIEW (a wire cannot judge them) in their verdict column and in
    every cell of a scenario that touches them. Requirements judged by a scenario but missing from
    the report's requirement list still get a row, so nothing judged is hidden.
    """
    by_id = {s["id"]: s for s in report["scenarios"]}
    scenarios = [by_id[sid] for sid in scenario_order]
    listed = list(report["requirements"])
    known = {r["id"] for r in listed}
    extra = sorted({rid for s in scenarios for rid in s["requirements"]} - known)
    rows = []
    for position, req in enumerate(listed + [
            {"id": rid, "level": "", "statement": "(not in the report's requirement list)",
             "audit_only": False, "long_timer": False, "verdict": None, "scenarios": []} for rid in extra]):
        cited_by = set(req["scenarios"])
        cells = []
        for scenario in scenarios:
            verdict = scenario["requirements"].get(req["id"])
            cited = verdict is not None or scenario["id"] in cited_by
            if req["audit_only"] and cited:
                verdict = "REVIEW"
            # One letter per cell, end tags omitted (valid HTML): a 229 x 60 matrix stays near 150 KB.
            if verdict is None:
                cells.append("<td class=c>\u00b7" if cited else "<td>")
            else:
                letter = CELL.get(verdict, "?")
                cells.append(f"<td class=k{letter or 'p'}>{letter}")
        shown = "REVIEW" if req["audit_only"] else req["verdict"]
        rows.append({**req, "shown": shown, "cells": Markup("".join(cells)), "position": position})
    rows.sort(key=lambda r: (_rank(r["shown"]), r["position"]))
    return {"columns": [{"id": s["id"], "verdict": s["verdict"]} for s in scenarios], "rows": rows,
            "present": [v for v in VERDICTS if any(r["shown"] == v for r in rows)]}


def _evidence_link(path: str | None) -> dict | None:
    if not path:
        return None
    return {"path": path, "name": path.rsplit("/", 1)[-1], "href": evidence_href(path)}


def _transcripts(scenario: Mapping[str, Any]) -> list[dict]:
    """The scenario's SMTP transcripts (``.txt`` evidence), in the order they were written."""
    return [link for p in scenario["evidence"] if p.endswith(".txt") and (link := _evidence_link(p))]


def _finding_view(finding: Mapping[str, Any]) -> dict:
    evidence = finding["evidence"]
    return {**finding, "href": evidence_href(evidence), "problem": finding["verdict"] in UNEXPECTED,
            "message_link": _evidence_link(evidence) if evidence and not evidence.endswith(".txt") else None,
            "transcript_link": _evidence_link(evidence) if evidence and evidence.endswith(".txt") else None}


def _passing_groups(findings: list[Mapping[str, Any]]) -> list[dict]:
    """PASS findings by check, with how many times each held (the page names the checks; the messages of
    thousands of passes stay in report.json, which keeps the page small)."""
    groups: dict[str, dict] = {}
    for f in findings:
        groups.setdefault(f["check"], {"check": f["check"], "count": 0})["count"] += 1
    return list(groups.values())


def _note_groups(findings: list[Mapping[str, Any]]) -> list[dict]:
    """INFO, REVIEW and SKIP findings grouped by (verdict, check, requirements, message without its volatile
    values): one line each, with how often it was said and the evidence of the first."""
    groups: dict[tuple, dict] = {}
    for f in findings:
        key = (f["verdict"], f["check"], tuple(f["requirements"]), stable_text(f["message"]))
        if key not in groups:
            groups[key] = {**_finding_view(f), "count": 0}
        groups[key]["count"] += 1
    return list(groups.values())


def _scenario_view(scenario: Mapping[str, Any]) -> dict:
    bad_evidence = {f["evidence"] for f in scenario["findings"] if f["verdict"] in UNEXPECTED and f["evidence"]}
    ordered = sorted(scenario["findings"], key=lambda f: VERDICTS.index(f["verdict"]))
    judged = ("FAIL", "ERROR", "XPASS", "WARN", "XFAIL", "BLOCKED")  # in view; notes and passes collapsed
    shown = [_finding_view(f) for f in ordered if f["verdict"] in judged]
    notes = _note_groups([f for f in ordered if f["verdict"] not in judged and f["verdict"] != "PASS"])
    return {
        **scenario,
        "anchor": f"scenario-{scenario['id']}",
        "problem": scenario["verdict"] in UNEXPECTED,
        "attention": scenario["verdict"] in ATTENTION,
        "duration": _duration(scenario["duration_s"]),
        "diagram": layout(scenario["events"], bad_evidence),
        "findings_view": shown,
        "notes": notes,
        "passing": _passing_groups([f for f in ordered if f["verdict"] == "PASS"]),
        "passing_count": sum(1 for f in ordered if f["verdict"] == "PASS"),
        "finding_counts": {v: n for v in VERDICTS
                           if (n := sum(1 for f in scenario["findings"] if f["verdict"] == v))},
        "requirement_list": sorted(((rid, v) for rid, v in scenario["requirements"].items() if v != "PASS"),
                                   key=lambda kv: (_rank(kv[1]), kv[0])),
        "passed_requirements": sum(1 for v in scenario["requirements"].values() if v == "PASS"),
        "evidence_links": [_evidence_link(p) for p in scenario["evidence"]],
        "transcripts": _transcripts(scenario),
    }


def _triage(report: Mapping[str, Any], scenarios: list[dict]) -> list[dict]:
    """The requirements someone must look at (FAIL, ERROR, XPASS, BLOCKED), most severe first: each with
    its statement and, per scenario that gave the verdict, the findings saying why with their evidence."""
    items = []
    for position, req in enumerate(report["requirements"]):
        if req["verdict"] not in ATTENTION:
            continue
        where = []
        for s in scenarios:
            verdict = s["requirements"].get(req["id"])
            if verdict not in ATTENTION:
                continue
            findings = [_finding_view(f) for f in s["findings"]
                        if req["id"] in f["requirements"] and f["verdict"] in ATTENTION]
            where.append({"scenario": s, "verdict": verdict, "findings": findings[:TRIAGE_FINDINGS],
                          "more": max(len(findings) - TRIAGE_FINDINGS, 0)})
        decisions = sorted({f["decision"] for w in where for f in w["findings"] if f["decision"]})
        items.append({**req, "where": where, "decisions": decisions, "position": position})
    items.sort(key=lambda r: (_rank(r["verdict"]), r["position"]))
    return items


def _cited_decisions(report: Mapping[str, Any]) -> list[dict]:
    """The decisions the report's findings name, with the point each settles (for the IDs on the page)."""
    known = load_decisions()
    named = {f["decision"] for s in report["scenarios"] for f in s["findings"] if f["decision"]}
    ordered = sorted((d for d in named if d in known), key=lambda d: int(d[1:]))
    return [{"id": d, "point": known[d].point} for d in ordered]


def docs_base(out_dir: Path) -> str | None:
    """The relative path from a report folder to the checkout's docs/ (with a trailing slash), or None
    when the suite runs from an installed copy without docs."""
    if not DOCS_DIR.is_dir():
        return None
    return os.path.relpath(DOCS_DIR, Path(out_dir).resolve()).replace(os.sep, "/") + "/"


def html_context(report: Mapping[str, Any], docs: str | None = None) -> dict:
    """Everything the HTML template reads, computed from the report (no logic in the template)."""
    summary = report["summary"]
    scenarios = sorted((_scenario_view(s) for s in report["scenarios"]), key=lambda s: _rank(s["verdict"]))
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
        "errors": [s for s in scenarios if s["verdict"] == "ERROR" and s["error"]],
        "triage": _triage(report, scenarios),
        "matrix": _matrix(report, [s["id"] for s in scenarios]),
        "decisions": _cited_decisions(report),
        "link": _Links(docs),
        "levels": LEVEL_MEANINGS,
        "docs": docs,
    }


def to_html(report: Mapping[str, Any], docs: str | None = None) -> str:
    """``report.html``: one self-contained page (inline CSS and SVG, readable without JavaScript).

    ``docs``: the relative path from the page to the suite's docs/ folder (see ``docs_base``); requirement
    and decision IDs link to their entries there. Without it they link to their place on the page."""
    return _environment().get_template(TEMPLATE).render(html_context(report, docs))


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
    _write_text(paths["html"], to_html(report, docs_base(out_dir)))
    _write_text(paths["junit"], to_junit(report))
    _write_text(paths["markdown"], to_markdown(report))
    return paths

"""Conformance reports: the canonical ``report.json`` model and everything rendered from it.

- ``model``: verdicts in order of severity, ``worst()``, ``summarize()``, ``load_report()``,
  ``validate_report()`` against ``schemas/report.schema.json``;
- ``render``: ``write_reports()`` (report.json, report.html, junit.xml, summary.md) and the pure
  renderers ``to_json()``, ``to_html()``, ``to_junit()``, ``to_markdown()``;
- ``diff``: ``diff_reports()``, ``format_diff()``, ``diff_exit_code()`` between two runs.

Layer 3: imports nothing from the engine, the scenarios or the reference provider.
"""

from .diff import diff_exit_code, diff_reports, format_diff, is_empty
from .model import (
    FORMAT,
    UNEXPECTED,
    VERDICTS,
    ReportError,
    check_summary,
    count_verdicts,
    exit_code_for,
    load_report,
    severity,
    summarize,
    validate_report,
    worst,
)
from .render import FILES, to_html, to_json, to_junit, to_markdown, write_reports

__all__ = [
    "FILES",
    "FORMAT",
    "UNEXPECTED",
    "VERDICTS",
    "ReportError",
    "check_summary",
    "count_verdicts",
    "diff_exit_code",
    "diff_reports",
    "exit_code_for",
    "format_diff",
    "is_empty",
    "load_report",
    "severity",
    "summarize",
    "to_html",
    "to_json",
    "to_junit",
    "to_markdown",
    "validate_report",
    "worst",
    "write_reports",
]

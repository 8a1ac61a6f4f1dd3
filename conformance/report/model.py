"""The report model: verdicts and their order, loading and validating ``report.json``.

A report is a plain dict, the canonical JSON the run engine emits (``report.json``); its strict JSON
Schema is ``schemas/report.schema.json`` (packaged as ``conformance/schemas/report.schema.json``).
Everything else (HTML, JUnit, Markdown, the diff between two runs) is rendered from that dict, so a
report can always be regenerated from ``report.json`` alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..schemafiles import schema_path

FORMAT = "pec-conformance-report/1"
SCHEMA_RESOURCE = "report.schema.json"

#: Every verdict, most severe first. ``worst()`` aggregates with this order (the verdict of a scenario
#: from its findings, of a requirement from its scenarios, of a run from its scenarios):
#:
#: - FAIL: a MUST broken by the target. Nothing outranks a conformance failure.
#: - ERROR: the harness or the infrastructure failed; never blamed on the target, but the result is
#:   incomplete, so it outranks everything that is a judgement.
#: - XPASS: the expectations file said this fails, and it passed. An unexpected pass is louder than a
#:   warning: either a deviation was fixed (and the expectation must go, or it will hide the next
#:   regression) or the check stopped seeing it. Either way someone must look, and CI fails.
#: - WARN: a SHOULD broken (or a decision says warn): reported, does not fail the run.
#: - XFAIL: a known, justified deviation that failed as announced: nothing new, but below WARN it
#:   would vanish from view, so it stays above PASS.
#: - BLOCKED: not exercised because a precondition failed (the positive control was refused, the target
#:   could not be reached, the preceding step of the transaction never happened). Never a PASS and
#:   never a FAIL: the FAIL, if any, belongs to the requirement that was really broken. It ranks above
#:   PASS so that a requirement passed in one scenario and blocked in another does not read as fully
#:   exercised.
#: - PASS: judged and conformant.
#: - REVIEW: needs evidence a wire cannot show (audit-only); no judgement was possible, so one PASS
#:   alongside makes the whole PASS.
#: - INFO: worth knowing, no judgement.
#: - SKIP: not run (the target does not declare the capability): the least information of all.
VERDICTS: tuple[str, ...] = ("FAIL", "ERROR", "XPASS", "WARN", "XFAIL", "BLOCKED", "PASS", "REVIEW", "INFO",
                             "SKIP")

#: Severity rank of each verdict: higher is worse.
SEVERITY: dict[str, int] = {v: len(VERDICTS) - i for i, v in enumerate(VERDICTS)}

#: Verdicts an expectations file may announce (XFAIL/XPASS are outcomes of such an announcement).
EXPECTABLE: tuple[str, ...] = ("PASS", "FAIL", "WARN", "INFO", "SKIP", "ERROR", "REVIEW")

#: Outcomes nobody expected: each one makes the exit code non-zero, is highlighted in the HTML, is a
#: JUnit failure or error, and is listed in the Markdown summary.
UNEXPECTED: frozenset[str] = frozenset({"FAIL", "ERROR", "XPASS"})

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_HARNESS = 2


class ReportError(ValueError):
    """A report that cannot be read or does not follow the schema; ``errors`` lists why."""

    def __init__(self, message: str, errors: Iterable[str] = ()) -> None:
        self.errors = list(errors)
        detail = "".join(f"\n  - {e}" for e in self.errors[:20])
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__(message + detail + more)


def severity(verdict: str) -> int:
    """The rank of a verdict in ``VERDICTS`` (higher is worse); ValueError for an unknown verdict."""
    try:
        return SEVERITY[verdict]
    except KeyError:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICTS)}") from None


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of ``verdicts`` in the order of ``VERDICTS``.

    Nothing to aggregate gives ``SKIP`` (the least severe verdict: nothing was judged), so
    ``worst([*a, *b]) == worst([worst(a), worst(b)])`` holds for empty parts too.
    """
    result = "SKIP"
    for verdict in verdicts:
        if severity(verdict) > SEVERITY[result]:
            result = verdict
    return result


def count_verdicts(verdicts: Iterable[str]) -> dict[str, int]:
    """How many of each verdict, with every verdict present (0 when absent), in ``VERDICTS`` order."""
    counter = Counter(verdicts)
    for verdict in counter:
        severity(verdict)
    return {v: counter.get(v, 0) for v in VERDICTS}


def exit_code_for(scenario_verdicts: Iterable[str]) -> int:
    """0 when nothing is unexpected; 1 when the target failed (FAIL) or an expected failure passed
    (XPASS); otherwise 2 when the harness failed (ERROR).

    Conformance failures outrank harness errors: a target that failed a MUST has failed whatever
    else could not run, and the report shows the ERRORs besides.
    """
    verdicts = set(scenario_verdicts)
    if verdicts & {"FAIL", "XPASS"}:
        return EXIT_FAILURES
    if "ERROR" in verdicts:
        return EXIT_HARNESS
    return EXIT_OK


def summarize(scenarios: Iterable[Mapping[str, Any]], requirements: Iterable[Mapping[str, Any]]) -> dict:
    """The ``summary`` object of a report, computed from its scenarios and requirements.

    The engine may use it as is; ``check_summary()`` compares a report's summary with it.
    """
    scenarios = list(scenarios)
    scenario_verdicts = [s["verdict"] for s in scenarios]
    return {
        "exit_code": exit_code_for(scenario_verdicts),
        "scenarios": count_verdicts(scenario_verdicts),
        "requirements": count_verdicts(r["verdict"] for r in requirements),
        "findings": count_verdicts(f["verdict"] for s in scenarios for f in s["findings"]),
        "unexpected": sum(1 for v in scenario_verdicts if v in UNEXPECTED),
    }


def counts(report: Mapping[str, Any], what: str) -> dict[str, int]:
    """``report["summary"][what]`` with every verdict present (a verdict left out counts 0)."""
    given = report["summary"][what]
    return {v: int(given.get(v, 0)) for v in VERDICTS}


def load_report(path: str | Path, *, validate: bool = False) -> dict:
    """Read a ``report.json``. With ``validate=True`` also check it against the schema.

    Raises ReportError when the file is not JSON, not an object, or (validating) not a valid report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read the report: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: a report is a JSON object, found {type(data).__name__}")
    if validate:
        errors = validate_report(data)
        if errors:
            raise ReportError(f"{path}: not a valid {FORMAT} report", errors)
    return data


@lru_cache(maxsize=1)
def report_schema() -> dict:
    """The report JSON Schema (draft 2020-12), from the packaged ``conformance/schemas``."""
    text = schema_path(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema = report_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _where(path: Iterable[Any]) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return "report" + parts


def validate_report(report: Mapping[str, Any]) -> list[str]:
    """Why ``report`` is not a valid report: schema errors, then duplicate scenario or requirement
    IDs (which would break the HTML anchors and the diff). Empty when valid.

    Each error reads ``report.scenarios[2].findings[0].verdict: 'BAD' is not one of [...]``.
    """
    errors = [
        f"{_where(err.absolute_path)}: {err.message}"
        for err in sorted(_validator().iter_errors(report), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if errors:
        return errors
    for what in ("scenarios", "requirements"):
        seen: set[str] = set()
        for i, item in enumerate(report[what]):
            if item["id"] in seen:
                errors.append(f"report.{what}[{i}].id: duplicate id {item['id']!r}")
            seen.add(item["id"])
    return errors


def check_summary(report: Mapping[str, Any]) -> list[str]:
    """Where ``report["summary"]`` disagrees with its scenarios and requirements (see ``summarize``).

    Checks the counts, ``unexpected``, and that the exit code is 0 exactly when nothing is
    unexpected (which non-zero code is the engine's call). Empty when consistent.
    """
    errors = []
    computed = summarize(report["scenarios"], report["requirements"])
    for what in ("scenarios", "requirements", "findings"):
        given = counts(report, what)
        for verdict in VERDICTS:
            if given[verdict] != computed[what][verdict]:
                errors.append(f"summary.{what}.{verdict} is {given[verdict]}, "
                              f"the report holds {computed[what][verdict]}")
    summary = report["summary"]
    if summary["unexpected"] != computed["unexpected"]:
        errors.append(f"summary.unexpected is {summary['unexpected']}, "
                      f"the report holds {computed['unexpected']} FAIL/ERROR/XPASS scenarios")
    if (summary["exit_code"] == 0) != (computed["unexpected"] == 0):
        errors.append(f"summary.exit_code is {summary['exit_code']} with "
                      f"{computed['unexpected']} unexpected scenarios")
    return errors

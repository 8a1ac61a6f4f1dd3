"""From scenario results to the canonical report dict (`report.json`, schemas/report.schema.json)."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime

from .. import __version__, redact
from ..catalogue import load_catalogue
from ..checks.findings import REGISTRY, Finding
from ..report.model import FORMAT, summarize, worst
from .core import ScenarioResult
from .profile import TargetProfile


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _finding(f: Finding, levels: dict[str, str]) -> dict:
    reqs = list(dict.fromkeys(r for r in f.requirements if r))
    level = next((levels[r] for r in reqs if r in levels), "")
    return {
        "check": f.check or "unnamed",
        "requirements": reqs,
        "level": level,
        "verdict": str(f.verdict),
        "message": f.message or "(no message)",
        "expected": f.expected,
        "actual": f.actual,
        "decision": f.decision,
        "evidence": getattr(f, "evidence", None),
        "expected_verdict": getattr(f, "expected_verdict", None),
        "reason": getattr(f, "reason", None),
    }


def _scenario(r: ScenarioResult, levels: dict[str, str]) -> dict:
    return {
        "id": r.spec.id,
        "family": r.spec.family,
        "title": r.spec.title,
        "story": r.spec.story,
        "verdict": r.verdict,
        "expected": r.expected,
        "reason": r.reason,
        "started": _iso(r.started),
        "duration_s": round(r.duration, 3),
        "error": r.error,
        "requirements": r.requirement_verdicts(),
        "events": r.events,
        "findings": [_finding(f, levels) for f in r.findings],
        "evidence": list(dict.fromkeys(r.evidence)),
    }


def requirement_rows(scenarios: list[dict]) -> list[dict]:
    """Every requirement of the catalogue with its verdict over the run (audit-only ones: REVIEW)."""
    cited: dict[str, list[str]] = {}
    for spec in REGISTRY:
        for rid in spec.requirements:
            cited.setdefault(rid, []).append(spec.name)
    rows = []
    for req in load_catalogue():
        verdicts, where = [], []
        for s in scenarios:
            v = s["requirements"].get(req.id)
            if v is not None:
                verdicts.append(v)
                where.append(s["id"])
        judged = [v for v in verdicts if v not in ("SKIP", "INFO")]
        if req.audit_only and not judged:
            verdict = "REVIEW"
        elif verdicts:
            verdict = worst(verdicts)
        else:
            verdict = "SKIP"
        rows.append({"id": req.id, "level": req.level, "statement": req.statement, "audit_only": req.audit_only,
                     "long_timer": req.long_timer, "verdict": verdict, "scenarios": where,
                     "checks": cited.get(req.id, [])})
    return rows


def build_report(results: list[ScenarioResult], profile: TargetProfile, *, started: float, finished: float,
                 command: list[str], multiplier: float, jobs: int, faults: list[str],
                 stopped: str | None = None) -> dict:
    levels = {r.id: r.level for r in load_catalogue()}
    scenarios = [_scenario(r, levels) for r in results]
    requirements = requirement_rows(scenarios)
    target = profile.describe()
    target["faults"] = list(faults)
    target["kind"] = profile.kind
    run = {"id": f"run-{_iso(started)}", "started": _iso(started), "finished": _iso(finished),
           "duration_s": round(finished - started, 3), "command": command, "timeout_multiplier": multiplier,
           "jobs": jobs, "host": f"{platform.node()} ({sys.platform})"}
    if stopped:
        run["stopped"] = stopped  # a partial report: the scenarios not finished are BLOCKED ("not run")
    # Findings quote what the target sent (replies, header fields): no password it echoed goes further.
    return redact.scrub_tree({
        "format": FORMAT,
        "suite": {"name": "pec-conformance", "version": __version__},
        "run": run,
        "target": target,
        "summary": summarize(scenarios, requirements),
        "scenarios": scenarios,
        "requirements": requirements,
    })

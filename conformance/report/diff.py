"""Compare two reports: what got worse, what got better, what appeared or went away.

Only verdicts are compared, never volatile fields: run IDs, timestamps, durations, Message-IDs,
evidence paths, events and a finding's ``expected``/``actual``/``decision`` texts (which quote
Message-IDs and times) are ignored. A finding is known by (scenario, check, requirements) and
compared by its verdict and its message with every volatile value in it (dates, times, identifiers,
generated addresses and tokens, ports, durations) replaced by a placeholder (``stable_text``): two
clean runs of the same suite against the same target give no difference at all.

Three levels are compared, each item with the same shape
``{"kind": "scenario"|"requirement"|"finding", "id": str, "old": verdict|None, "new": verdict|None,
"detail": str|None}``:

- scenarios by ID, requirements by ID;
- findings grouped by (scenario, check, requirements): a group is judged by its worst verdict, so a
  check that adds a FAIL next to its old PASS is a regression even when the scenario already failed.

When a verdict changes:

- **regression**: it got worse. Judged verdicts rank PASS = INFO < XFAIL < WARN < FAIL = ERROR =
  XPASS; moving up is a regression, down a fix. SKIP, REVIEW and BLOCKED judge nothing: moving from them
  into FAIL/ERROR/XPASS is a regression (a capability now tested fails), any other move to or from
  them is ``changed`` (coverage moved; a FAIL that became a SKIP is not a fix).
- **fix**: it got better.
- **changed**: any other change (FAIL <-> ERROR <-> XPASS, PASS <-> INFO, to or from SKIP/REVIEW,
  or a finding whose message changed under the same verdict).
- **new** / **removed**: present in one report only (``old`` or ``new`` is None).

Findings that are notes only (INFO on both sides, or INFO on one side and absent on the other) are
not compared: they judge nothing, and some depend on the timing of a run (a receipt that arrived
before the scenario ended or just after).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Set
from typing import Any

from .model import UNEXPECTED, worst

CATEGORIES: tuple[str, ...] = ("regressions", "fixes", "changed", "new", "removed")
KINDS: tuple[str, ...] = ("scenario", "requirement", "finding")

#: Rank of the verdicts that judge something (see the module docstring); SKIP, REVIEW and BLOCKED
#: have none (a PASS that became BLOCKED is coverage lost: ``changed``, never a fix).
_RANK: dict[str, int] = {"PASS": 0, "INFO": 0, "XFAIL": 1, "WARN": 2, "FAIL": 3, "ERROR": 3, "XPASS": 3}


#: Volatile values inside a finding's message, most specific first, each with its placeholder.
_VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.I), r) for p, r in (
    (r"<[^<>\s]+@[^<>\s]+>", "<id>"),  # Message-IDs
    (r"\b(mon|tue|wed|thu|fri|sat|sun), +\d{1,2} [a-z]{3} \d{4} \d{1,2}:\d{2}(:\d{2})?( *[+-]\d{4})?", "<date>"),
    (r"\b\d{4}-\d{2}-\d{2}([t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})?)?\b", "<date>"),
    (r"\b\d{1,2}/\d{1,2}/\d{4}\b", "<date>"),
    (r"\b\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\b", "<time>"),
    (r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b", "<address>"),  # IP and port of a loopback listener
    (r"[\w.+-]*(\d[\w.+-]*[a-f]|[a-f][\w.+-]*\d)[\w.+-]*@[\w.-]+", "<mailbox>"),  # generated addresses
    (r"\b[\w-]+(\.[\w-]+)*\.\d{6,}(\.[\w-]+)*", "<token>"),  # identificativi with a timestamp part
    (r"\b[a-z]{0,4}[0-9a-f]{8,}(\.[0-9a-z]+)*\b", "<token>"),  # tokens, hashes
    (r"\b\d{6,}\b", "<n>"),  # timestamps and serials as digit runs
    (r"\b\d+\.\d+ ?(ms|s|sec|seconds|min|minutes|h)\b", "<duration>"),  # measured (12 h is a rule, 3.2 s a time)
))


def stable_text(text: str) -> str:
    """``text`` on one line with its volatile values replaced by placeholders (see ``_VOLATILE``)."""
    text = " ".join(text.split())
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def classify(old: str, new: str) -> str | None:
    """``regressions``, ``fixes``, ``changed`` or None (same verdict) for a verdict change."""
    if old == new:
        return None
    old_rank, new_rank = _RANK.get(old), _RANK.get(new)
    if old_rank is None or new_rank is None:
        return "regressions" if new in UNEXPECTED and old not in UNEXPECTED else "changed"
    if new_rank > old_rank:
        return "regressions"
    if new_rank < old_rank:
        return "fixes"
    return "changed"


def _item(kind: str, ident: str, old: str | None, new: str | None, detail: str | None = None) -> dict:
    return {"kind": kind, "id": ident, "old": old, "new": new, "detail": detail}


def _compare(kind: str, old: Mapping[str, str], new: Mapping[str, str], out: dict[str, list]) -> None:
    for ident in old.keys() | new.keys():
        if ident not in new:
            out["removed"].append(_item(kind, ident, old[ident], None))
        elif ident not in old:
            out["new"].append(_item(kind, ident, None, new[ident]))
        else:
            category = classify(old[ident], new[ident])
            if category:
                out[category].append(_item(kind, ident, old[ident], new[ident]))


def _finding_groups(report: Mapping[str, Any], scenario_ids: Set[str]) -> dict[str, Counter]:
    """Findings of those scenarios by ``scenario/check [REQ-01, REQ-02]``: a multiset of
    (verdict, message)."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for scenario in report["scenarios"]:
        if scenario["id"] not in scenario_ids:
            continue
        for finding in scenario["findings"]:
            key = f"{scenario['id']}/{finding['check']} [{', '.join(finding['requirements'])}]"
            groups[key][(finding["verdict"], stable_text(finding["message"]))] += 1
    return groups


def _describe(signatures: Counter) -> str:
    return "; ".join(f"{verdict}: {message}" for (verdict, message) in sorted(signatures.elements()))


def _compare_findings(old: Mapping[str, Any], new: Mapping[str, Any], out: dict[str, list]) -> None:
    """Findings of the scenarios both reports ran (a new or removed scenario is one item already)."""
    both = {s["id"] for s in old["scenarios"]} & {s["id"] for s in new["scenarios"]}
    old_groups, new_groups = _finding_groups(old, both), _finding_groups(new, both)
    for key in old_groups.keys() | new_groups.keys():
        before, after = old_groups.get(key), new_groups.get(key)
        if all(v == "INFO" for group in (before, after) if group for v, _ in group):
            continue  # notes judge nothing: one that comes or goes with the timing of a run is not a change
        if after is None:
            out["removed"].append(_item("finding", key, worst(v for v, _ in before), None, _describe(before)))
        elif before is None:
            out["new"].append(_item("finding", key, None, worst(v for v, _ in after), _describe(after)))
        elif before != after:
            old_worst, new_worst = worst(v for v, _ in before), worst(v for v, _ in after)
            gone, came = before - after, after - before
            detail = "; ".join(part for part in (
                f"now {_describe(came)}" if came else "",
                f"was {_describe(gone)}" if gone else "",
            ) if part)
            out[classify(old_worst, new_worst) or "changed"].append(
                _item("finding", key, old_worst, new_worst, detail))


def diff_reports(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict:
    """The verdict differences from ``old`` to ``new`` (see the module docstring).

    Returns ``{"regressions", "fixes", "changed", "new", "removed": [item, ...], "context": {...}}``;
    items are sorted by kind (scenario, requirement, finding) then ID. ``context`` names the two runs
    and is not part of the difference: ``is_empty()`` looks at the five lists only.
    """
    out: dict[str, list] = {category: [] for category in CATEGORIES}
    _compare("scenario", {s["id"]: s["verdict"] for s in old["scenarios"]},
             {s["id"]: s["verdict"] for s in new["scenarios"]}, out)
    _compare("requirement", {r["id"]: r["verdict"] for r in old["requirements"]},
             {r["id"]: r["verdict"] for r in new["requirements"]}, out)
    statements = {r["id"]: r["statement"] for r in [*old["requirements"], *new["requirements"]]}
    for items in out.values():
        for item in items:
            if item["kind"] == "requirement" and item["id"] in statements:
                item["detail"] = statements[item["id"]]
    _compare_findings(old, new, out)
    for items in out.values():
        items.sort(key=lambda item: (KINDS.index(item["kind"]), item["id"]))
    return {**out, "context": {"old": _context(old), "new": _context(new)}}


def _context(report: Mapping[str, Any]) -> dict:
    return {
        "run": report["run"]["id"],
        "started": report["run"]["started"],
        "target": report["target"]["name"],
        "suite_version": report["suite"]["version"],
        "exit_code": report["summary"]["exit_code"],
    }


def is_empty(d: Mapping[str, Any]) -> bool:
    """True when no verdict changed, appeared or went away."""
    return not any(d[category] for category in CATEGORIES)


def diff_exit_code(d: Mapping[str, Any]) -> int:
    """1 when anything regressed, else 0 (for ``pec-conformance diff`` in CI)."""
    return 1 if d["regressions"] else 0


_TITLES = {
    "regressions": "Regressions (got worse)",
    "fixes": "Fixes (got better)",
    "changed": "Changed (same severity, or coverage moved)",
    "new": "New (only in the new report)",
    "removed": "Removed (only in the old report)",
}

#: Lines shown per category of other changes; `--json` lists everything.
OTHER_LIMIT = 25


def _line(item: Mapping[str, Any], width: int) -> str:
    verdicts = f"{item['old'] or '-'} -> {item['new'] or '-'}"
    line = f"  {item['kind']:<11} {item['id']:<{width}}  {verdicts}"
    if item["detail"]:
        detail = " ".join(item["detail"].split())
        line += f"  ({detail[:157] + '...' if len(detail) > 160 else detail})"
    return line


def format_diff(d: Mapping[str, Any]) -> str:
    """The difference for the console: regressions first, then fixes (every item), then the other
    changes (new, removed, changed; at most ``OTHER_LIMIT`` lines each, ``--json`` has them all)."""
    lines = []
    context = d.get("context")
    if context:
        old, new = context["old"], context["new"]
        lines.append(f"old: run {old['run']} ({old['started']}) target {old['target']}, "
                     f"suite {old['suite_version']}, exit code {old['exit_code']}")
        lines.append(f"new: run {new['run']} ({new['started']}) target {new['target']}, "
                     f"suite {new['suite_version']}, exit code {new['exit_code']}")
    if is_empty(d):
        lines.append("No change: every verdict is the same (times, identifiers, generated addresses, durations "
                     "and evidence paths are ignored).")
        return "\n".join(lines) + "\n"
    other = sum(len(d[c]) for c in ("changed", "new", "removed"))
    lines.append(f"Differences: {len(d['regressions'])} regressions, {len(d['fixes'])} fixes, "
                 f"{other} other changes.")
    for category in CATEGORIES:
        items = d[category]
        if not items:
            continue
        lines.append("")
        lines.append(f"{_TITLES[category]}: {len(items)}")
        width = min(max(len(item["id"]) for item in items), 60)
        limit = len(items) if category in ("regressions", "fixes") else OTHER_LIMIT
        lines += [_line(item, width) for item in items[:limit]]
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more (--json lists them all)")
    return "\n".join(lines) + "\n"

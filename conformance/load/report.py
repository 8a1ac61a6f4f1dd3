"""The load report: every submitted message accounted for, latency percentiles per receipt kind,
throughput, loss and errors over time, the validator's findings on the sampled receipts, the
thresholds the user set; written as `load.json` (checked against `schemas/load-report.schema.json`),
`load.md` and `load.html` (charts drawn as inline SVG by the template).

Latencies run from the access point's reply to the submission (the moment the user's client knows
the message was taken) to the moment the suite first saw the receipt (mailboxes are polled: the
poll interval is the resolution).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .observe import CONSEGNE, NON_DELIVERY, Arrival

SCHEMA_ID = "pec-conformance/load-report/1"
FILES = {"json": "load.json", "markdown": "load.md", "html": "load.html"}
LATENCY_KINDS = ("submission", "accettazione", "envelope", "consegna")
MAX_LISTED = 1000  # lost messages and errors listed one by one (the counts are always complete)


class ThresholdError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """'30s', '2m', '500ms', '1.5' (seconds)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text or "")
    if not m:
        raise ThresholdError(f"not a duration: {text!r} (write 30s, 500ms, 2m)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_loss(text: str) -> tuple[float, bool]:
    """'0' (messages) or '0.5%' (share of submitted): (limit, is_percent)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text or "")
    if not m:
        raise ThresholdError(f"not a loss limit: {text!r} (write 0, 3 or 0.5%)")
    return float(m.group(1)), bool(m.group(2))


def percentiles(values: list[float]) -> dict[str, Any]:
    """Nearest-rank p50, p95, p99 and max, in seconds (None when nothing was measured)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(values)

    def rank(p: float) -> float:
        return round(s[max(math.ceil(p * len(s)) - 1, 0)], 4)

    return {"count": len(s), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(s[-1], 4)}


@dataclass
class Inputs:
    parameters: dict
    submissions: list[dict]
    arrivals: list[Arrival]
    envelopes: list[dict]
    answers: list[dict]
    counterpart_errors: list[str]
    findings: list[dict]
    sampled: int
    swarm: dict
    harness_errors: list[str]
    started: float
    finished: float


def build(inputs: Inputs, thresholds: dict) -> dict:
    """The report dict, exit code included."""
    subs = sorted(inputs.submissions, key=lambda r: r["reply_at"])
    accepted = [r for r in subs if 200 <= r["code"] < 300]
    by_msgid: dict[str, dict] = {}
    for a in inputs.arrivals:
        if a.msgid is None:
            continue
        slot = by_msgid.setdefault(a.msgid, {"acc": None, "consegna": {}, "notices": []})
        if a.kind == "accettazione":
            slot["acc"] = a.at if slot["acc"] is None else min(slot["acc"], a.at)
        elif a.kind in CONSEGNE and a.recipient:
            slot["consegna"].setdefault(a.recipient.lower(), a.at)
        else:
            slot["notices"].append((a.kind, (a.recipient or "").lower(), a.at))
    env_at: dict[tuple[str, str], float] = {}
    for e in inputs.envelopes:
        for r in e.get("rcpts") or []:
            env_at.setdefault((e.get("msgid") or "", r.lower()), e["at"])
    lat: dict[str, list[float]] = {k: [] for k in LATENCY_KINDS}
    lost, complete, expected_receipts, received_receipts = [], 0, 0, 0
    for r in accepted:
        t0 = r["reply_at"]
        lat["submission"].append(t0 - r["start"])
        slot = by_msgid.get(r["mid"], {"acc": None, "consegna": {}, "notices": []})
        missing = []
        expected_receipts += 1 + len(r["rcpts"])
        if slot["acc"] is None:
            missing.append("accettazione")
        else:
            received_receipts += 1
            lat["accettazione"].append(slot["acc"] - t0)
        for rcpt in r["rcpts"]:
            at = slot["consegna"].get(rcpt.lower())
            if at is None:
                missing.append(f"consegna {rcpt}")
            else:
                received_receipts += 1
                lat["consegna"].append(at - t0)
            e = env_at.get((r["mid"], rcpt.lower()))
            if e is not None:
                lat["envelope"].append(e - t0)
        if missing:
            lost.append({"message_id": r["mid"], "submitted_at": round(t0, 3), "missing": missing,
                         "notices": [f"{k} {who}".strip() for k, who, _ in slot["notices"] if k in NON_DELIVERY]})
        else:
            complete += 1
    refused = [r for r in subs if r["code"] >= 400]
    failed = [r for r in subs if r["code"] == 0]
    known = {r["mid"] for r in subs}
    unmatched = sum(1 for a in inputs.arrivals if a.msgid and a.msgid not in known)
    start = min([r["start"] for r in subs] or [inputs.started])
    timeline = _timeline(start, accepted, refused + failed, inputs.arrivals, lost)
    window = max((subs[-1]["reply_at"] - start) if subs else 0.0, 1e-9)
    report = {
        "schema": SCHEMA_ID,
        "tool": {"name": "pec-conformance", "version": __version__},
        "started": inputs.started, "finished": inputs.finished,
        "parameters": inputs.parameters,
        "totals": {"attempted": len(subs), "submitted": len(accepted), "refused": len(refused),
                   "failed": len(failed), "complete": complete, "lost": len(lost),
                   "receipts_expected": expected_receipts, "receipts_received": received_receipts,
                   "receipts_missing": expected_receipts - received_receipts, "unmatched_arrivals": unmatched,
                   "loss_ratio": round(len(lost) / len(accepted), 4) if accepted else 0.0},
        "latency": {k: percentiles(v) for k, v in lat.items()},
        "throughput": {"window_s": round(window, 3), "submitted_per_s": round(len(accepted) / window, 2),
                       "complete_per_s": round(complete / window, 2)},
        "timeline": timeline,
        "lost": lost[:MAX_LISTED],
        "errors": [{"at": round(r["reply_at"] - start, 3), "message_id": r["mid"], "code": r["code"], "text": r["text"]}
                   for r in (refused + failed)[:MAX_LISTED]],
        "validation": {"sampled": inputs.sampled, "findings": inputs.findings,
                       "fail": sum(1 for f in inputs.findings if f["verdict"] == "FAIL")},
        "counterpart": {"envelopes": len(inputs.envelopes), "answers": len(inputs.answers),
                        "unverified": sum(1 for e in inputs.envelopes if not e.get("verified")),
                        "errors": inputs.counterpart_errors[:100]},
        "swarm": inputs.swarm,
        "harness_errors": inputs.harness_errors,
    }
    report["thresholds"] = _thresholds(report, thresholds)
    report["exit_code"] = exit_code(report)
    return report


def _timeline(start: float, accepted: list[dict], errors: list[dict], arrivals: list[Arrival],
              lost: list[dict]) -> list[dict]:
    """Per second since the first submission: submissions, receipts seen, errors, messages later lost."""
    def sec(t: float) -> int:
        return max(int(t - start), 0)

    cols = {"submitted": Counter(sec(r["reply_at"]) for r in accepted),
            "accettazione": Counter(sec(a.at) for a in arrivals if a.kind == "accettazione"),
            "consegna": Counter(sec(a.at) for a in arrivals if a.kind in CONSEGNE),
            "errors": Counter(sec(r["reply_at"]) for r in errors),
            "lost": Counter(sec(x["submitted_at"]) for x in lost)}
    end = max([max(c) for c in cols.values() if c] or [0])
    return [{"t": t, **{k: c.get(t, 0) for k, c in cols.items()}} for t in range(end + 1)]


def _thresholds(report: dict, limits: dict) -> list[dict]:
    out = []
    if limits.get("max_p95_accept") is not None:
        value = report["latency"]["accettazione"]["p95"]
        out.append({"name": "p95 acceptance receipt", "limit": f"{limits['max_p95_accept']:g} s",
                    "value": "none measured" if value is None else f"{value:g} s",
                    "ok": value is not None and value <= limits["max_p95_accept"]})
    if limits.get("max_p95_delivery") is not None:
        value = report["latency"]["consegna"]["p95"]
        out.append({"name": "p95 delivery receipt", "limit": f"{limits['max_p95_delivery']:g} s",
                    "value": "none measured" if value is None else f"{value:g} s",
                    "ok": value is not None and value <= limits["max_p95_delivery"]})
    if limits.get("max_loss") is not None:
        limit, percent = limits["max_loss"]
        t = report["totals"]
        value = 100 * t["loss_ratio"] if percent else t["lost"]
        out.append({"name": "lost messages", "limit": f"{limit:g}{'%' if percent else ''}",
                    "value": f"{value:g}{'%' if percent else ''}", "ok": value <= limit})
    return out


def exit_code(report: dict) -> int:
    """2 the harness failed (nothing to judge), 1 a threshold broken or a FAIL, 0 otherwise."""
    if report["harness_errors"] or not report["totals"]["attempted"]:
        return 2
    if any(not t["ok"] for t in report["thresholds"]) or report["validation"]["fail"]:
        return 1
    return 0


# ------------------------------------------------------------------------------------------ rendering


def validate(report: dict) -> None:
    import jsonschema

    from ..schemafiles import schema_path

    schema = json.loads(schema_path("load-report.schema.json").read_text("utf-8"))
    jsonschema.validate(report, schema)


def _chart_series(timeline: list[dict], keys: tuple[str, ...], width: int = 640, height: int = 180) -> dict:
    """Polylines (SVG points) for some timeline columns on shared axes."""
    top = max([row[k] for row in timeline for k in keys] or [0]) or 1
    n = max(len(timeline) - 1, 1)
    lines = {k: " ".join(f"{40 + i * (width - 50) / n:.1f},{height - 20 - row[k] * (height - 40) / top:.1f}"
                         for i, row in enumerate(timeline)) for k in keys}
    return {"lines": lines, "top": top, "seconds": len(timeline), "width": width, "height": height}


def _bars(latency: dict, width: int = 640) -> list[dict]:
    """Horizontal bars for p50/p95/p99/max per kind, on one scale."""
    top = max([v[p] or 0 for v in latency.values() for p in ("p50", "p95", "p99", "max")] or [0]) or 1
    rows = []
    for kind, v in latency.items():
        for p in ("p50", "p95", "p99", "max"):
            rows.append({"kind": kind, "p": p, "value": v[p],
                         "w": round((v[p] or 0) * (width - 220) / top, 1)})
    return rows


def to_markdown(report: dict) -> str:
    from ..report.render import _environment

    return _environment().get_template("load.md.j2").render(r=report)


def to_html(report: dict) -> str:
    from ..report.render import _environment

    return _environment().get_template("load.html.j2").render(
        r=report, bars=_bars(report["latency"]),
        flow=_chart_series(report["timeline"], ("submitted", "accettazione", "consegna")),
        trouble=_chart_series(report["timeline"], ("errors", "lost")))


def write(report: dict, out: Path) -> dict[str, Path]:
    validate(report)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in FILES.items()}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    paths["html"].write_text(to_html(report), encoding="utf-8")
    return paths

"""`pec-conformance load` against the built-in target: a Locust master and two worker processes on
loopback, a few seconds of PEC traffic, every message accounted for, and the report (schema-valid
JSON, Markdown, an HTML page with its charts rendered by headless Chromium)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from lxml import html as lxml_html
from test_report import _run_chromium

from conformance.load.observe import Arrival
from conformance.load.report import exit_code, parse_duration, parse_loss, percentiles
from conformance.load.run import outstanding

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "load-report.schema.json"


def _load(out: Path, *args: str, workers: int = 2) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "load", "--out", str(out), "--quiet",
                           "--workers", str(workers), *args], capture_output=True, text=True, timeout=150, check=False)
    assert (out / "load.json").is_file(), proc.stdout + proc.stderr
    report = json.loads((out / "load.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    return proc, report


def _accounted(report: dict) -> None:
    t = report["totals"]
    assert t["submitted"] > 0
    assert t["complete"] + t["lost"] == t["submitted"]
    assert t["receipts_received"] + t["receipts_missing"] == t["receipts_expected"]
    assert len(report["lost"]) == t["lost"]
    assert all(x["missing"] for x in report["lost"])


def test_load_builtin_target_two_workers(tmp_path):
    out = tmp_path / "load"
    proc, report = _load(out, "--users", "4", "--time", "3s", "--drain", "20s", "--counterparts", "2",
                         "--local-share", "0.3", "--recipients", "2", "--validate-every", "5", "--max-p95-accept", "30s",
                         "--max-loss", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _accounted(report)
    t = report["totals"]
    assert t["lost"] == 0 and t["refused"] == 0 and t["failed"] == 0 and t["unmatched_arrivals"] == 0
    assert report["swarm"]["workers"] == 2 and report["swarm"]["locust"]["version"]
    for kind in ("submission", "accettazione", "envelope", "consegna"):
        v = report["latency"][kind]
        assert v["count"] > 0, kind
        assert 0 <= v["p50"] <= v["p95"] <= v["p99"] <= v["max"], (kind, v)
    assert report["latency"]["accettazione"]["count"] == t["submitted"]
    assert t["receipts_expected"] == 3 * t["submitted"]  # an acceptance and two delivery receipts each
    # Every envelope (one per counterpart domain of a message) verified as the target's and answered with a
    # presa in carico, and with a consegna per recipient.
    cp, per_recipient = report["counterpart"], report["latency"]["envelope"]["count"]
    assert 0 < cp["envelopes"] <= per_recipient and cp["answers"] == cp["envelopes"] + per_recipient
    assert report["counterpart"]["unverified"] == 0 and not report["counterpart"]["errors"]
    assert report["validation"]["sampled"] > 0 and report["validation"]["fail"] == 0
    assert all(th["ok"] for th in report["thresholds"]) and len(report["thresholds"]) == 2
    assert sum(row["submitted"] for row in report["timeline"]) == t["submitted"]
    assert "complete" in (out / "load.md").read_text()

    page = out / "load.html"
    doc = lxml_html.fromstring(_run_chromium(tmp_path / "profile", "--dump-dom", page.resolve().as_uri()).stdout)
    assert doc.get_element_by_id("totals-submitted").text_content() == str(t["submitted"])
    assert doc.get_element_by_id("totals-lost").text_content() == "0"
    assert doc.get_element_by_id("exit-code").text_content() == "0"
    assert len(doc.get_element_by_id("chart-latency").xpath(".//*[local-name()='rect']")) == 16
    for chart, series in (("chart-throughput", 3), ("chart-trouble", 2)):
        lines = doc.get_element_by_id(chart).xpath(".//*[local-name()='polyline']")
        assert len(lines) == series and all(line.get("points").count(",") > 1 for line in lines), chart
    shot = tmp_path / "load.png"
    _run_chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,1800", page.resolve().as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_load_shows_lost_delivery_receipts(tmp_path):
    """The reference fault that issues no delivery receipt for one delivered envelope in ten: about
    10 % of the messages lost, each listed by Message-ID, and exit 1 with --max-loss 0."""
    proc, report = _load(tmp_path / "load", "--users", "3", "--time", "2s", "--drain", "3s", "--local-share", "1",
                         "--reference-fault", "dlv-lose-one-in-ten", "--max-loss", "0", workers=1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BROKEN: lost messages" in proc.stdout
    _accounted(report)
    t = report["totals"]
    assert abs(t["lost"] - math.ceil(t["submitted"] / 10)) <= 1, t
    assert all(len(x["missing"]) == 1 and x["missing"][0].startswith("consegna ") for x in report["lost"])
    assert all(x["message_id"].startswith("<load.") for x in report["lost"])
    assert report["exit_code"] == 1 and not report["thresholds"][0]["ok"]


def test_load_reports_a_fail_with_its_evidence(tmp_path):
    """A deviation in the receipts (acceptance subject prefix in lower case) is judged on the sampled
    receipts under load, reported with the saved message, and makes the exit code 1."""
    out = tmp_path / "load"
    proc, report = _load(out, "--users", "2", "--time", "1s", "--drain", "15s", "--validate-every", "1",
                         "--reference-fault", "acc-subject-prefix", workers=1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _accounted(report)
    assert report["totals"]["lost"] == 0 and not report["thresholds"]
    fails = [f for f in report["validation"]["findings"] if f["verdict"] == "FAIL"]
    assert fails and report["validation"]["fail"] == len(fails)
    assert {f["kind"] for f in fails} == {"accettazione"}
    assert any("FMT-18" in f["requirements"] for f in fails)
    for f in fails:
        assert b"Subject: Accettazione: " in (out / f["evidence"]).read_bytes()


# ---------------------------------------------------------------------------------------------- pure parts


def test_percentiles_nearest_rank():
    v = percentiles([i / 100 for i in range(1, 101)])
    assert (v["count"], v["p50"], v["p95"], v["p99"], v["max"]) == (100, 0.5, 0.95, 0.99, 1.0)
    assert percentiles([])["p95"] is None


def test_threshold_parsing():
    assert parse_duration("30s") == 30 and parse_duration("500ms") == 0.5 and parse_duration("2m") == 120
    assert parse_loss("0") == (0.0, False) and parse_loss("0.5%") == (0.5, True)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_outstanding_counts_each_awaited_receipt():
    subs = [{"mid": "<a@x>", "code": 250, "rcpts": ["u@c.test", "v@c.test"]},
            {"mid": "<b@x>", "code": 550, "rcpts": ["u@c.test"]}]  # refused: nothing awaited
    arrivals = [Arrival(1.0, "s", "accettazione", "<a@x>", None),
                Arrival(2.0, "s", "consegna-breve", "<a@x>", "U@c.test"),
                Arrival(3.0, "s", "mancata-consegna-24h", "<a@x>", "v@c.test")]
    assert outstanding(subs, []) == 3
    assert outstanding(subs, arrivals) == 0


def test_exit_code_rules():
    base = {"harness_errors": [], "totals": {"attempted": 5}, "thresholds": [], "validation": {"fail": 0}}
    assert exit_code(base) == 0
    assert exit_code({**base, "thresholds": [{"ok": False}]}) == 1
    assert exit_code({**base, "validation": {"fail": 1}}) == 1
    assert exit_code({**base, "harness_errors": ["x"]}) == 2

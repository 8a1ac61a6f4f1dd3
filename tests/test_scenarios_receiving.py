"""The receiving families (incoming.*, anomaly.*, transport.*) against the built-in reference provider,
through the command line as a user runs it: all PASS when the provider is honest, and the right
requirement IDs FAIL when it carries representative faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FAMILIES = ("incoming.*", "anomaly.*", "transport.*")


def run_suite(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", *args, "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return proc, {s["id"]: s for s in report["scenarios"]}


def failed_requirements(scenario: dict) -> set[str]:
    return {r for f in scenario["findings"] if f["verdict"] == "FAIL" for r in f["requirements"]}


def test_receiving_families_pass_against_the_honest_reference(tmp_path):
    args = [a for family in FAMILIES for a in ("--scenario", family)]
    proc, scenarios = run_suite(tmp_path / "honest", *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(scenarios) >= 17
    for family in ("incoming.", "anomaly.", "transport."):
        assert any(sid.startswith(family) for sid in scenarios), family
    not_passed = {sid: s["verdict"] for sid, s in scenarios.items() if s["verdict"] != "PASS"}
    assert not not_passed, not_passed


def test_representative_faults_are_caught_by_the_right_requirements(tmp_path):
    faults = ("inc-no-presa-in-carico", "inc-unverified-as-pec", "env-altered-original")
    wanted = {
        "incoming.valid-envelope": {"RIC-09"},  # no presa in carico for a correct envelope
        "anomaly.unsigned": {"RIC-04", "RIC-14"},  # an unsigned envelope delivered and acknowledged as PEC
        "transport.peer-tls": {"ENV-12"},  # the carried original differs from the submission
    }
    args = [a for f in faults for a in ("--reference-fault", f)] + [a for s in wanted for a in ("--scenario", s)]
    proc, scenarios = run_suite(tmp_path / "faulty", *args)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    for sid, requirements in wanted.items():
        assert scenarios[sid]["verdict"] == "FAIL", (sid, scenarios[sid]["verdict"])
        assert requirements <= failed_requirements(scenarios[sid]), (sid, failed_requirements(scenarios[sid]))

"""The non-delivery, timeout and virus scenario families against the built-in reference provider,
through the command line: all PASS when the provider is honest, and the right requirements FAIL when
a fault is switched on (the suite proving its own verdicts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FAMILIES = ["nondelivery.*", "timeouts.*", "virus.*"]


def _run(out: Path, patterns: list[str], faults: list[str] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--out", str(out), "--quiet"]
    for p in patterns:
        cmd += ["--scenario", p]
    for f in faults:
        cmd += ["--reference-fault", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    report = out / "report.json"
    assert report.is_file(), f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc, {s["id"]: s for s in json.loads(report.read_text(encoding="utf-8"))["scenarios"]}


def _problems(scenario: dict) -> list[str]:
    return [f"{f['verdict']} {','.join(f['requirements'])}: {f['message']} (expected {f['expected']}, "
            f"actual {f['actual']})" for f in scenario["findings"] if f["verdict"] not in ("PASS", "INFO")]


def test_families_pass_against_the_honest_reference(tmp_path: Path) -> None:
    proc, scenarios = _run(tmp_path / "honest", FAMILIES)
    families = {sid.split(".")[0] for sid in scenarios}
    assert families == {"nondelivery", "timeouts", "virus"}
    assert len(scenarios) >= 11
    not_passed = {sid: (s["verdict"], _problems(s)) for sid, s in scenarios.items() if s["verdict"] != "PASS"}
    assert not not_passed, not_passed
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


# fault -> {scenario: requirement that must FAIL}
FAULTS = {
    "trk-24h-early": {"timeouts.silent": "TMO-03", "timeouts.late-consegna": "TMO-05"},
    "dlv-mancata-errore-nessuno": {"nondelivery.unknown-mailbox-at-target": "CON-20"},
    "inc-rilevazione-to-user": {"virus.envelope-into-target": "VIR-07"},
}


def test_representative_faults_are_caught(tmp_path: Path) -> None:
    """Three faults of different points in one run (they touch different flows), each caught by the
    requirement its catalogue entry names."""
    wanted = {sid: req for expected in FAULTS.values() for sid, req in expected.items()}
    proc, scenarios = _run(tmp_path / "faulty", sorted(wanted), list(FAULTS))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    for sid, req in wanted.items():
        s = scenarios[sid]
        assert s["verdict"] == "FAIL", (sid, _problems(s))
        assert s["requirements"].get(req) == "FAIL", (sid, req, _problems(s))
        assert any(f["verdict"] == "FAIL" and req in f["requirements"] and f["check"] == f"scenario.{sid}"
                   for f in s["findings"]), (sid, req, _problems(s))

"""The whole suite against targets that implement nothing of PEC (tests/fakes.py).

Each fake has working STARTTLS, AUTH (login names that are not the addresses) and Maildir mailboxes, so
set-up is never the cause; beyond that it refuses, accepts and drops, defers, relays or copies back.
A requirement may PASS only for what the fake really does: EARNED lists each exception with its reason.
Any other PASS is a verdict the suite would give a provider for work it did not do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import SHAPES, FakeTarget, counterpart_pki

from conformance.report.model import validate_report

# What every fake really does, so a PASS there is earned.
EARNED = {
    "ACC-01": "the fake's access point requires AUTH before MAIL (530 otherwise)",
    "ACC-02": "the fake's access point is a submission service: EHLO, STARTTLS, AUTH, then MAIL",
    "SEC-02": "the fake's users reach it over TLS only (STARTTLS before AUTH is required)",
    "SEC-04": "the fake's incoming point advertises STARTTLS and takes plain sessions too",
    "SEC-07": "the fake's access point refuses a mail transaction before STARTTLS (530)",
    "SEC-01": "the fake's points offer STARTTLS (the only secure channel it has)",
}
# What some fakes really do besides.
EARNED_BY_SHAPE = {shape: {"CON-04": "it stores what its incoming point receives unchanged, as CON-04 asks"}
                   for shape in ("relay", "mirror", "echo", "refuse-charset")}
# Shapes run without preflight too: every scenario then meets the refusal itself (each one's own control).
NO_PREFLIGHT = ("refuse-all", "defer-all", "refuse-charset")
# refuse-charset with preflight is refuse-all with another reply: only the run without preflight is kept.
CASES = [(s, True) for s in SHAPES if s != "refuse-charset"] + [(s, False) for s in NO_PREFLIGHT]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("degenerate-pki")
    return counterpart_pki(folder)


def run_against(fake: FakeTarget, pki_dir: Path, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    profile = fake.folder / "target.toml"
    profile.write_text(fake.profile(pki_dir))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target", str(profile),
                           "--counterpart-pki", str(pki_dir), "--timeout-multiplier", "0.05", "--jobs", "8",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **fake.environment()))
    return proc, time.monotonic() - start


def passes(report: dict) -> dict[str, list[str]]:
    """Requirement -> 'scenario: message' of each PASS finding, for requirements whose verdict is PASS."""
    rows = {r["id"]: r["verdict"] for r in report["requirements"]}
    out: dict[str, list[str]] = {}
    for s in report["scenarios"]:
        for f in s["findings"]:
            if f["verdict"] == "PASS":
                for rid in f["requirements"]:
                    if rows.get(rid) == "PASS":
                        out.setdefault(rid, []).append(f"{s['id']}: {f['message']}")
    return out


@pytest.mark.parametrize(("shape", "preflight"), CASES,
                         ids=[f"{s}{'' if p else '-no-preflight'}" for s, p in CASES])
def test_a_target_doing_nothing_of_pec_earns_no_pass(tmp_path, pki, shape, preflight):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", shape, tls).start()
    try:
        proc, elapsed = run_against(fake, pki_dir, tmp_path / "out", *([] if preflight else ["--no-preflight"]))
    finally:
        fake.stop()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr  # nothing of PEC works: never a clean run
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert validate_report(report) == []
    # A refused (or lost) correct message is the target's failure of ACC-17, told once, not per scenario.
    acc17 = [f for s in report["scenarios"] for f in s["findings"]
             if f["verdict"] == "FAIL" and "ACC-17" in f["requirements"]]
    if preflight and shape in ("refuse-all", "defer-all", "accept-all", "echo"):
        assert len(acc17) == 1, [f["message"] for f in acc17]
    earned = {**EARNED, **EARNED_BY_SHAPE.get(shape, {})}
    unearned = {rid: where for rid, where in passes(report).items() if rid not in earned}
    if os.environ.get("PEC_DEGENERATE_DUMP"):  # a listing of what is left, for whoever fixes the scenarios
        dump = Path(os.environ["PEC_DEGENERATE_DUMP"])
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{shape}{'' if preflight else '-no-preflight'}.json").write_text(json.dumps(
            {"elapsed_s": round(elapsed, 1), "unearned": unearned, "pass": sorted(passes(report)),
             "scenarios": {v: sum(1 for s in report["scenarios"] if s["verdict"] == v)
                           for v in {s["verdict"] for s in report["scenarios"]}}}, indent=1))
    assert not unearned, f"{shape}: PASS for work the fake never did ({len(unearned)}):\n" + "\n".join(
        f"  {rid}: {where[0]}" for rid, where in sorted(unearned.items()))
    assert elapsed < 60, f"{shape}: {elapsed:.0f} s"


def test_a_login_that_fails_is_an_error_naming_the_mailbox_not_a_fail(tmp_path, pki):
    """Wrong passwords: preflight names the mailbox and the server's reply; no requirement FAILs for it."""
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "relay", tls)
    fake.passwords = {a: "not-the-password" for a in fake.passwords}  # the profile's secrets no longer match
    fake.start()
    try:
        profile = fake.folder / "target.toml"
        profile.write_text(fake.profile(pki_dir))
        env = dict(os.environ, **{k: "wrong-secret" for k in fake.environment()})
        proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target", str(profile),
                               "--counterpart-pki", str(pki_dir), "--timeout-multiplier", "0.1", "--out",
                               str(tmp_path / "out"), "--scenario", "acceptance.*", "--scenario", "formal.*"],
                              capture_output=True, text=True, timeout=300, env=env)
    finally:
        fake.stop()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert validate_report(report) == []
    fails = [f for s in report["scenarios"] for f in s["findings"] if f["verdict"] == "FAIL"]
    assert not fails, fails
    pre = next(s for s in report["scenarios"] if s["id"] == "preflight")
    errors = [f["message"] for f in pre["findings"] if f["verdict"] == "ERROR"]
    assert any("utente1@pec.finto.test" in m and "535" in m for m in errors), errors
    blocked = {s["verdict"] for s in report["scenarios"] if s["id"] != "preflight"}
    assert blocked <= {"BLOCKED", "SKIP"}, blocked

"""Verdicts that claim no more than was seen.

- Statements about the suite itself (FMT-23: daticert read without DTD, stylesheet or entities; HDR-01:
  PEC header names matched case-insensitively, values exactly) are self-tests here, never the target's PASS;
  FMT-21 (descriptive) is only ever INFO.
- Each verdict made reachable by the scenarios' rework has a reference fault that turns exactly that
  requirement FAIL in the scenario that judges it (the suite proving its own verdicts).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import check
from conformance.pec.constants import Kind
from conformance.pec.mime import b64_body, walk_entity
from conformance.pec.parse import parse_message
from conformance.pec.samples import build_all_kinds, make_world
from conformance.pec.smime import sign_entity, split_signed


@pytest.fixture(scope="module")
def samples():
    world = make_world()
    return world, build_all_kinds(world)


def _judge(world, raw: bytes):
    return check(raw, ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl]))


def _with_xml(world, raw: bytes, edit) -> bytes:
    """The message with its daticert.xml changed by `edit(xml) -> xml`, signed again by its signer (alfa)."""
    root = walk_entity(raw)
    content = split_signed(root).content
    node = next(c for c in walk_entity(content).children if (c.filename or "").lower() == "daticert.xml")
    head = node.raw[: node.raw.index(b"\r\n\r\n") + 4]
    new = content.replace(node.raw, head + b64_body(edit(node.decoded())).rstrip(b"\r\n"))
    outer = [(n, v) for n, v in root.headers.items() if n.lower() not in ("mime-version", "content-type")]
    return sign_entity(outer, new, world.alfa.key, world.alfa.certificate)


def _verdicts(result, requirement: str) -> set[str]:
    return {str(f.verdict) for f in result.findings if requirement in f.requirements}


# ------------------------------------------------------------------------------------------------
# Self-tests of the suite (no verdict on a target)


def test_fmt23_daticert_with_doctype_and_stylesheet_is_read_without_fetching(samples, monkeypatch):
    world, kinds = samples
    acc = kinds.messages[Kind.ACCETTAZIONE]

    def add_prolog(xml: bytes) -> bytes:
        decl, _, rest = xml.partition(b"?>")
        return (decl + b"?>\n<?xml-stylesheet type=\"text/xsl\" href=\"http://127.0.0.1:9/postacert.xsl\"?>\n"
                b"<!DOCTYPE postacert SYSTEM \"http://127.0.0.1:9/postacert.dtd\">" + rest)

    raw = _with_xml(world, acc, add_prolog)

    def no_network(*args, **kwargs):
        raise AssertionError("the validator tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    result = _judge(world, raw)
    assert parse_message(raw).daticert is not None
    assert "FAIL" not in _verdicts(result, "FMT-07"), [f.message for f in result.findings if "FMT-07" in f.requirements]
    assert _verdicts(result, "FMT-23") <= {"INFO"}  # observed, never scored as the target's


def test_fmt23_entities_are_never_expanded(samples):
    world, kinds = samples
    acc = kinds.messages[Kind.ACCETTAZIONE]

    def add_entity(xml: bytes) -> bytes:
        decl, _, rest = xml.partition(b"?>")
        rest = rest.replace(b"</oggetto>", b"&espanso;</oggetto>", 1)
        return decl + b"?>\n<!DOCTYPE postacert [<!ENTITY espanso \"TESTO-ESPANSO\">]>" + rest

    raw = _with_xml(world, acc, add_entity)
    d = parse_message(raw).daticert
    assert d is None or "TESTO-ESPANSO" not in (d.oggetto or "")
    result = _judge(world, raw)
    assert "FAIL" in _verdicts(result, "FMT-07")  # a daticert declaring entities is the target's broken input
    assert "PASS" not in _verdicts(result, "FMT-23")


def test_hdr01_header_names_case_insensitive_values_exact(samples):
    world, kinds = samples
    acc = kinds.messages[Kind.ACCETTAZIONE]
    respelt = acc.replace(b"\r\nX-Ricevuta: accettazione\r\n", b"\r\nX-ricevuta: accettazione\r\n", 1)
    assert respelt != acc
    assert parse_message(respelt).kind is Kind.ACCETTAZIONE
    result = _judge(world, respelt)
    assert _verdicts(result, "HDR-01") == {"INFO"}
    assert "FAIL" not in _verdicts(result, "GEN-04")
    shouted = acc.replace(b"\r\nX-Ricevuta: accettazione\r\n", b"\r\nX-Ricevuta: Accettazione\r\n", 1)
    assert "FAIL" in _verdicts(_judge(world, shouted), "FMT-19")  # values compare exactly


def test_no_pass_for_statements_about_the_suite_or_descriptive_rows(samples):
    world, kinds = samples
    for kind, raw in kinds.messages.items():
        result = _judge(world, raw)
        for requirement in ("FMT-23", "HDR-01", "FMT-21"):
            assert _verdicts(result, requirement) <= {"INFO"}, (kind, requirement, _verdicts(result, requirement))
        if kind is Kind.ACCETTAZIONE:
            assert _verdicts(result, "FMT-21") == {"INFO"}
            assert Verdict.PASS in {f.verdict for f in result.findings if "TXT-01" in f.requirements}


# ------------------------------------------------------------------------------------------------
# Each reworked verdict has a reachable FAIL


def _run(out: Path, scenarios: list[str], faults: list[str]) -> dict:
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--out", str(out), "--quiet", "--jobs", "4"]
    for s in scenarios:
        cmd += ["--scenario", s]
    for f in faults:
        cmd += ["--reference-fault", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    report = out / "report.json"
    assert report.is_file(), f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    return {s["id"]: s for s in json.loads(report.read_text(encoding="utf-8"))["scenarios"]}


def _assert_caught(scenarios: dict, wanted: dict[str, str]) -> None:
    for (sid, req) in wanted.items():
        s = scenarios[sid]
        problems = [f"{f['verdict']} {f['requirements']}: {f['message']} ({f['actual']})" for f in s["findings"]
                    if f["verdict"] not in ("PASS", "INFO")]
        assert s["requirements"].get(req) == "FAIL", (sid, req, problems)
        assert any(f["verdict"] == "FAIL" and req in f["requirements"] and f["check"] == f"scenario.{sid}"
                   for f in s["findings"]), (sid, req, problems)


# fault -> (scenario, requirement the scenario must FAIL). One run: the faults touch different flows.
FAULTS = {
    "trk-retry-forever": ("transaction.peer-defers", "TMO-01"),
    "trk-late-consegna-dropped": ("timeouts.silent", "TMO-08"),
    "dlv-variant-mislabelled": ("inbound.receipt-variants", "CON-17"),
    "inc-anomaly-text-no-sender": ("anomaly.ordinary-mail", "ANO-09"),
    "inc-anomaly-routing-lost": ("inbound.anomaly-routing", "ANO-11"),
    "inc-infected-notice-as-anomaly": ("inbound.infected-receipt", "VIR-15"),
    "inc-crl-not-refreshed": ("anomaly.revoked-during-run", "RIC-07"),
    "acc-bcc-accepted": ("acceptance.bcc-refused", "ACC-08"),
    "acc-virus-not-detected": ("virus.at-access-point", "VIR-02"),
}


def test_reworked_verdicts_have_a_reachable_fail(tmp_path: Path) -> None:
    wanted = dict(FAULTS.values())
    scenarios = _run(tmp_path / "faulty", sorted(wanted), sorted(FAULTS))
    _assert_caught(scenarios, wanted)


def test_an_unverified_envelope_delivered_as_pec_fails_ric03(tmp_path: Path) -> None:
    """Apart: a target that verifies nothing delivers every forgery as PEC (and the revoked one too)."""
    wanted = {"anomaly.unsigned": "RIC-03"}
    _assert_caught(_run(tmp_path / "unverified", sorted(wanted), ["inc-unverified-as-pec"]), wanted)


def test_a_receipt_before_storing_fails_con02(tmp_path: Path) -> None:
    """Apart: a delivery point that never stores would block every control that needs a stored envelope."""
    wanted = {"incoming.valid-envelope": "CON-02", "delivery.same-provider": "CON-02"}
    scenarios = _run(tmp_path / "unstored", sorted(wanted), ["dlv-consegna-not-stored"])
    _assert_caught(scenarios, wanted)


def test_size_limit_messages_are_exactly_the_size_asked():
    """acceptance.oversize judges real messages around the limits: 29.9 MB, and half the limit plus a byte."""
    from types import SimpleNamespace

    from conformance.engine.core import ScenarioContext
    from conformance.scenarios.acceptance import FLOOR_TEST, sized

    ctx = SimpleNamespace(_counter=0, token="t0000", user=lambda i: "utente@pec.esempio.test")
    ctx.original = lambda *a, **kw: ScenarioContext.original(ctx, *a, **kw)
    for n, size in enumerate((FLOOR_TEST, 15_000_001, 60_000), 1):
        raw = sized(ctx, ["destinatario@pec.altro.test"], size, "prova")
        assert len(raw) == size
        assert parse_message(raw).header("message-id") == f"<t0000.{n}@suite.test>"  # one message, however sized

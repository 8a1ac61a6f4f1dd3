"""A realistic, valid sample report (the dict the run engine emits as report.json), for the tests.

Five scenarios, one of each outcome a reader must tell apart: PASS (acceptance.base), FAIL with
findings (delivery.completa), SKIP (timeout.preavviso-12h), XFAIL with its expectation and reason
(anomaly.unsigned) and ERROR (virus.rilevazione: the target throttled the counterpart). Events run
between four parties: user, target-access, target-incoming, counterpart. The requirement list holds
real catalogue IDs, among them the audit-only LOG-01 (REVIEW).
"""

from __future__ import annotations

import copy
from typing import Any

from conformance.report import summarize

MSGID = "opec21025.20251119101502.04711.01.1.1@pec.example.it"


def _finding(check: str, requirements: list[str], level: str, verdict: str, message: str, **kw: Any) -> dict:
    finding = {
        "check": check, "requirements": requirements, "level": level, "verdict": verdict, "message": message,
        "expected": None, "actual": None, "decision": None, "evidence": None,
        "expected_verdict": None, "reason": None,
    }
    unknown = kw.keys() - finding.keys()
    assert not unknown, unknown
    finding.update(kw)
    return finding


def _event(at: float, src: str, dst: str, label: str, kind: str | None, evidence: str | None,
           message_id: str | None = None) -> dict:
    return {"at": at, "from": src, "to": dst, "label": label, "kind": kind, "message_id": message_id,
            "evidence": evidence}


def _evidence(scenario_id: str, *names: str) -> list[str]:
    return [f"evidence/{scenario_id}/{name}" for name in names]


def _scenario(sid: str, title: str, story: str, verdict: str, started: str, duration: float, **kw: Any) -> dict:
    scenario = {
        "id": sid, "family": sid.split(".", 1)[0], "title": title, "story": story, "verdict": verdict,
        "expected": None, "reason": None, "started": started, "duration_s": duration, "error": None,
        "requirements": {}, "events": [], "findings": [], "evidence": [],
    }
    unknown = kw.keys() - scenario.keys()
    assert not unknown, unknown
    scenario.update(kw)
    return scenario


def _acceptance() -> dict:
    sid = "acceptance.base"
    ev = _evidence(sid, "001-out-submission.eml", "001-out-submission.smtp.txt", "002-in-accettazione.eml")
    return _scenario(
        sid, "Acceptance of a well-formed message",
        "The user submits a well-formed message to one counterpart mailbox; expect an accettazione in the "
        "user's mailbox, signed, with the PEC msgid and the recipient labelled certified.",
        "PASS", "2025-11-19T09:15:01.200Z", 1.84,
        requirements={"ACC-12": "PASS", "ACC-13": "PASS", "ACC-15": "PASS"},
        events=[
            _event(0.0, "user", "target-access", "SMTP submission", None, ev[1]),
            _event(0.62, "target-access", "user", "ricevuta di accettazione", "accettazione", ev[2], f"<{MSGID}>"),
        ],
        findings=[
            _finding("acceptance.headers", ["ACC-12"], "MUST*", "PASS", "Accettazione headers follow the template",
                     evidence=ev[2]),
            _finding("acceptance.parts", ["ACC-13"], "MUST", "PASS", "Text part and daticert.xml present",
                     evidence=ev[2]),
            _finding("acceptance.msgid", ["ACC-15"], "MUST", "PASS", "PEC msgid has the form <string>@<domain>",
                     actual=f"<{MSGID}>", evidence=ev[2]),
        ],
        evidence=ev,
    )


def _delivery() -> dict:
    sid = "delivery.completa"
    ev = _evidence(sid, "001-out-submission.eml", "002-in-accettazione.eml", "003-in-busta-trasporto.eml",
                   "004-out-presa-in-carico.eml", "005-out-consegna-completa.eml", "006-in-mailbox-consegna.eml",
                   "003-in-busta-trasporto.smtp.txt")
    envelope, receipt = ev[2], ev[5]
    return _scenario(
        sid, "Delivery to a counterpart mailbox with a complete receipt",
        "L'utente invia a una casella della controparte chiedendo la ricevuta completa: the counterpart answers "
        "presa in carico and consegna; expect an acceptance and a complete delivery receipt in the user's mailbox.",
        "FAIL", "2025-11-19T09:15:03.100Z", 4.27,
        requirements={"ACC-12": "PASS", "ENV-03": "FAIL", "CON-08": "FAIL", "CON-23": "FAIL", "FMT-25": "WARN",
                      "FMT-21": "INFO", "LOG-01": "REVIEW"},
        events=[
            _event(0.0, "user", "target-access", "SMTP submission", None, ev[0]),
            _event(0.41, "target-access", "user", "ricevuta di accettazione", "accettazione", ev[1], f"<{MSGID}>"),
            _event(0.52, "target-access", "counterpart", "busta di trasporto", "busta-trasporto", envelope,
                   f"<{MSGID}>"),
            _event(0.60, "counterpart", "target-incoming", "presa in carico", "presa-in-carico", ev[3],
                   "<pic.0001@counterpart.test>"),
            _event(0.71, "counterpart", "target-incoming", "avvenuta consegna (completa)", "consegna-completa",
                   ev[4], "<cons.0001@counterpart.test>"),
            _event(1.93, "target-incoming", "user", "IMAP fetch: consegna", "consegna-completa", receipt,
                   "<cons.0001@counterpart.test>"),
        ],
        findings=[
            _finding("acceptance.headers", ["ACC-12"], "MUST*", "PASS", "Accettazione headers follow the template",
                     evidence=ev[1]),
            _finding("envelope.date", ["ENV-03"], "MUST", "FAIL",
                     "Envelope Date: is not the acceptance time reported by the accettazione",
                     expected="Wed, 19 Nov 2025 10:15:03 +0100", actual="Wed, 19 Nov 2025 10:15:09 +0100",
                     evidence=envelope),
            _finding("receipt.completa-copy", ["CON-08", "CON-23"], "MUST*", "FAIL",
                     "The complete receipt carries no postacert.eml: the original is missing",
                     expected="postacert.eml = the original as carried in the envelope",
                     actual="parts: text/plain, application/xml", evidence=receipt),
            _finding("text.alternative", ["FMT-25"], "SHOULD", "WARN",
                     "Text part is text/plain only; multipart/alternative (plain + html) is recommended",
                     actual="text/plain; charset=iso-8859-1", evidence=receipt),
            _finding("text.wording", ["FMT-21"], "INFO", "INFO",
                     "Receipt wording differs from the decree's template (data items all present)",
                     evidence=receipt),
            _finding("logs.operation", ["LOG-01"], "MUST", "REVIEW",
                     "The provider's log of this transaction can only be checked in an audit",
                     actual=f"msgid <{MSGID}>"),
        ],
        evidence=ev,
    )


def _timeout() -> dict:
    return _scenario(
        "timeout.preavviso-12h", "12 h notice when the counterpart never answers",
        "The counterpart stays silent; expect the 12 h preavviso and then the 24 h mancata consegna.",
        "SKIP", "2025-11-19T09:15:07.500Z", 0.0,
        requirements={"TMO-02": "SKIP"},
        findings=[
            _finding("timers.preavviso-12h", ["TMO-02"], "MUST*", "SKIP",
                     "The target profile declares no scaled timers (capability timers.scaled = false)"),
        ],
    )


def _anomaly() -> dict:
    sid = "anomaly.unsigned"
    ev = _evidence(sid, "001-out-unsigned.eml", "001-out-unsigned.smtp.txt", "002-in-mailbox-anomalia.eml")
    reason = "Known deviation PEC-1234: the anomaly envelope lacks Reply-To; fix planned for release 5.2"
    return _scenario(
        sid, "Unsigned mail from a PEC domain becomes an anomaly envelope",
        "The counterpart sends an unsigned message to a target mailbox; expect it wrapped in a busta di anomalia.",
        "XFAIL", "2025-11-19T09:15:07.600Z", 2.05, expected="FAIL", reason=reason,
        requirements={"ANO-04": "PASS", "ANO-06": "PASS", "ANO-08": "XFAIL"},
        events=[
            _event(0.0, "counterpart", "target-incoming", "unsigned message", "ordinary", ev[1],
                   "<plain.0002@counterpart.test>"),
            _event(1.12, "target-incoming", "user", "IMAP fetch: busta di anomalia", "busta-anomalia", ev[2],
                   "<anomalia.0002@pec.example.it>"),
        ],
        findings=[
            _finding("anomaly.x-trasporto", ["ANO-04"], "MUST", "PASS", "X-Trasporto: errore present",
                     evidence=ev[2]),
            _finding("anomaly.subject", ["ANO-06"], "MUST", "PASS", "Subject starts with ANOMALIA MESSAGGIO: ",
                     evidence=ev[2]),
            _finding("anomaly.reply-to", ["ANO-08"], "MUST", "XFAIL",
                     "No Reply-To: although the received message had none",
                     expected="Reply-To: <mittente@counterpart.test>", actual="(absent)", evidence=ev[2],
                     expected_verdict="FAIL", reason=reason),
        ],
        evidence=ev,
    )


def _virus() -> dict:
    sid = "virus.rilevazione"
    ev = _evidence(sid, "001-out-busta-eicar.eml", "001-out-busta-eicar.smtp.txt")
    return _scenario(
        sid, "Virus detection on an incoming envelope",
        "The counterpart sends an envelope carrying the EICAR test string; expect a rilevazione virus back to the "
        "counterpart's mailReceipt and nothing in the recipient's mailbox.",
        "ERROR", "2025-11-19T09:15:09.700Z", 31.6,
        error="counterpart could not hand the envelope over: target-incoming answered "
              "421 4.7.0 Too many connections, try again later (3 attempts)",
        requirements={"VIR-07": "ERROR"},
        events=[
            _event(0.0, "counterpart", "target-incoming", "busta di trasporto (EICAR): 421", "busta-trasporto",
                   ev[1], "<busta.0003@counterpart.test>"),
        ],
        findings=[
            _finding("harness.smtp", [], "", "ERROR",
                     "SMTP 421 from the incoming point: not tested (throttling is not a target failure)",
                     actual="421 4.7.0 Too many connections", evidence=ev[1]),
        ],
        evidence=ev,
    )


def _requirement(rid: str, level: str, statement: str, verdict: str, scenarios: list[str], checks: list[str],
                 audit_only: bool = False, long_timer: bool = False) -> dict:
    return {"id": rid, "level": level, "statement": statement, "audit_only": audit_only,
            "long_timer": long_timer, "verdict": verdict, "scenarios": scenarios, "checks": checks}


def _requirements() -> list[dict]:
    return [
        _requirement("ACC-12", "MUST*", "On acceptance the sender gets X-Ricevuta: accettazione, Date = acceptance "
                     "time, Subject: ACCETTAZIONE: <subject>.", "PASS",
                     ["acceptance.base", "delivery.completa"], ["acceptance.headers"]),
        _requirement("ACC-13", "MUST", "The acceptance receipt includes a human-readable text part and the XML "
                     "certification data.", "PASS", ["acceptance.base"], ["acceptance.parts"]),
        _requirement("ACC-15", "MUST", "Each accepted message gets an unambiguous PEC msgid.", "PASS",
                     ["acceptance.base"], ["acceptance.msgid"]),
        _requirement("ENV-03", "MUST", "The envelope Date: is the server-user acceptance time, the very instant "
                     "reported by the accettazione.", "FAIL", ["delivery.completa"], ["envelope.date"]),
        _requirement("CON-08", "MUST*", "With X-TipoRicevuta absent or completa, a To: recipient's receipt carries "
                     "a complete copy of the original.", "FAIL", ["delivery.completa"], ["receipt.completa-copy"]),
        _requirement("CON-23", "MUST*", "In a completa receipt, postacert.eml is the original as carried in the "
                     "envelope.", "FAIL", ["delivery.completa"], ["receipt.completa-copy"]),
        _requirement("FMT-25", "SHOULD", "Text parts are multipart/alternative (text/plain + text/html), "
                     "iso-8859-1, quoted-printable, inline.", "WARN", ["delivery.completa"], ["text.alternative"]),
        _requirement("FMT-21", "INFO", "The RFC's English text templates are illustrative; the Italian wording "
                     "comes from the decree.", "INFO", ["delivery.completa"], ["text.wording"]),
        _requirement("LOG-01", "MUST", "Each operation is logged with msgid, event time, sender, recipients, "
                     "subject and event type.", "REVIEW", ["delivery.completa"], ["logs.operation"],
                     audit_only=True),
        _requirement("TMO-02", "MUST*", "If neither presa in carico nor consegna arrives within 12 h of dispatch, "
                     "the sender's provider sends the 12 h preavviso notice.", "SKIP", ["timeout.preavviso-12h"],
                     ["timers.preavviso-12h"], long_timer=True),
        _requirement("ANO-04", "MUST", "The anomaly envelope carries X-Trasporto: errore.", "PASS",
                     ["anomaly.unsigned"], ["anomaly.x-trasporto"]),
        _requirement("ANO-06", "MUST", "The anomaly envelope subject is Subject: ANOMALIA MESSAGGIO: followed by "
                     "the original subject.", "PASS", ["anomaly.unsigned"], ["anomaly.subject"]),
        _requirement("ANO-08", "MUST", "Only when the received message had no Reply-To: does the anomaly envelope "
                     "add Reply-To: <original sender>.", "XFAIL", ["anomaly.unsigned"], ["anomaly.reply-to"]),
        _requirement("VIR-07", "MUST", "Virus detection goes to the sending provider's mailReceipt: X-Ricevuta: "
                     "rilevazione-virus.", "ERROR", ["virus.rilevazione"], []),
        _requirement("LOG-03", "MUST", "The log is retained for 30 months.", "REVIEW", [], [], audit_only=True),
    ]


def _set_path(report: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split("__")
    node = report
    for key in parents:
        node = node[key]
    node[leaf] = value


def sample_report(**overrides: Any) -> dict:
    """A fresh, valid report. ``overrides`` replace fields; ``__`` reaches into objects
    (``run__id="x"``, ``target__faults=["no-reply-to"]``). The summary is recomputed from the
    scenarios and requirements unless ``summary`` (or a ``summary__...`` field) is overridden."""
    report: dict = {
        "format": "pec-conformance-report/1",
        "suite": {"name": "pec-conformance", "version": "0.1.0"},
        "run": {
            "id": "20251119T091500Z-7f3a",
            "started": "2025-11-19T09:15:00Z",
            "finished": "2025-11-19T09:16:12.500Z",
            "duration_s": 72.5,
            "command": ["pec-conformance", "run", "--target", "fixtures/profiles/example.toml",
                        "--out", "reports/run"],
            "timeout_multiplier": 1.0,
            "jobs": 2,
            "host": "ci-runner-03",
        },
        "target": {
            "name": "example-gestore",
            "kind": "profile",
            "profile": "fixtures/profiles/example.toml",
            "domains": ["pec.example.it"],
            "faults": [],
            "capabilities": {"ordinary_mail_forwarding": True, "receipt_types": "completa,breve,sintetica",
                             "timers.scaled": False, "max_message_size_mb": 100},
        },
        "summary": {},
        "scenarios": [_acceptance(), _delivery(), _timeout(), _anomaly(), _virus()],
        "requirements": _requirements(),
    }
    report["summary"] = summarize(report["scenarios"], report["requirements"])
    summary_given = any(key == "summary" or key.startswith("summary__") for key in overrides)
    for key, value in overrides.items():
        _set_path(report, key, copy.deepcopy(value))
    if not summary_given:
        report["summary"] = summarize(report["scenarios"], report["requirements"])
    return report


def scenario(report: dict, sid: str) -> dict:
    """The scenario of ``report`` with that ID."""
    return next(s for s in report["scenarios"] if s["id"] == sid)

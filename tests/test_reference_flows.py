"""Two reference providers on loopback exchange real SMTP end to end.

Across these flows every one of the 14 message kinds is produced, and every message either
provider emits passes the validator with zero FAIL.
"""

from __future__ import annotations

import pytest
from refharness import (
    ALFA_USER,
    ALFA_USER2,
    BETA_USER,
    BETA_USER2,
    EXTERNAL_USER,
    FAST_TIMERS,
    SILENT_USER,
    deploy,
    no_fail,
)

from conformance.pec.constants import PEC_KINDS, Kind
from conformance.pec.parse import parse_message
from conformance.pec.samples import EICAR, ordinary_mail, sample_original
from conformance.reference.virus import EICAR as EICAR_REF


def original(to: str, cc: str | None = None, tipo: str | None = "completa", subject: str = "Prova PEC",
             extra: bytes = b"", attachment: bytes | None = None) -> bytes:
    raw = sample_original(tipo_ricevuta=tipo, subject=subject, client_msgid=None,
                          **({"attachment": attachment} if attachment is not None else {}))
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"to:", b"cc:", b"from:"))]
    lines += [f"From: Mario Rossi <{ALFA_USER}>".encode(), f"To: {to}".encode()]
    if cc:
        lines.append(f"Cc: {cc}".encode())
    import secrets

    lines.append(f"Message-ID: <{secrets.token_hex(6)}@client.test>".encode())
    return b"\r\n".join(lines) + extra + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """One deployment, every flow; yields the deployment after all messages have settled."""
    d = deploy(tmp_path_factory.mktemp("tour"), alfa_faults=(), timers=FAST_TIMERS)
    try:
        # delivery in its three variants, a Cc recipient, a same-domain recipient, an ordinary recipient
        assert d.submit(original(f"{BETA_USER}, {EXTERNAL_USER}", cc=BETA_USER2, tipo="completa"),
                        [BETA_USER, EXTERNAL_USER, BETA_USER2]) == "250"
        assert d.submit(original(BETA_USER, tipo="breve", subject="Breve"), [BETA_USER]) == "250"
        assert d.submit(original(f"{BETA_USER}, {ALFA_USER2}", tipo="sintetica", subject="Sintetica"),
                        [BETA_USER, ALFA_USER2]) == "250"
        # non-acceptance: formal (Bcc) and virus
        assert d.submit(original(BETA_USER, extra=b"\r\nBcc: nascosto@pec.beta.test", subject="Bcc"),
                        [BETA_USER]) == "250"
        assert d.submit(original(BETA_USER, subject="Virus", attachment=EICAR), [BETA_USER]) == "250"
        # non-delivery: an unknown mailbox at beta
        assert d.submit(original("nessuno@pec.beta.test", subject="Sconosciuto"), ["nessuno@pec.beta.test"]) == "250"
        # timeouts: a PEC provider that never answers
        assert d.submit(original(SILENT_USER, subject="Silenzio"), [SILENT_USER]) == "250"
        # anomaly: ordinary mail into beta
        assert d.inject(d.beta, EXTERNAL_USER, [BETA_USER], ordinary_mail(), starttls=False) == "250"
        # virus inside a correctly signed envelope: beta detects it, alfa's user gets the virus notice
        d.alfa.faults = type(d.alfa.faults)(["acc-virus-not-detected"])
        assert d.submit(original(BETA_USER, subject="Virus passato", attachment=EICAR), [BETA_USER]) == "250"
        d.alfa.faults = type(d.alfa.faults)([])
        d.wait(lambda: len(d.wait_kind(d.alfa, ALFA_USER, Kind.MANCATA_CONSEGNA_24H, deadline=15)) >= 1, 15)
        d.idle()
        yield d
    finally:
        d.stop()


def _kinds(messages):
    return [parse_message(m).kind for m in messages]


def test_every_kind_is_produced(tour):
    seen = set()
    for p in (tour.alfa, tour.beta):
        seen |= set(_kinds(tour.sent(p)))
        for user in p.config.users:
            seen |= set(_kinds(tour.mailbox(p, user)))
    assert set(PEC_KINDS) <= seen, f"missing: {sorted(set(PEC_KINDS) - seen)}"


def test_every_emitted_message_passes_the_validator(tour):
    checked = 0
    for p in (tour.alfa, tour.beta):
        for raw in tour.sent(p):
            result = tour.validate(raw, p)
            assert not no_fail(result), (result.kind, no_fail(result))
            checked += 1
    assert checked >= 30


def test_user_mailboxes_hold_only_valid_pec_and_no_presa_in_carico(tour):
    for p in (tour.alfa, tour.beta):
        for user in p.config.users:
            for raw in tour.mailbox(p, user):
                result = tour.validate(raw, p)
                assert result.kind is not Kind.PRESA_IN_CARICO  # GEN-07
                assert result.kind is not Kind.RILEVAZIONE_VIRUS
                assert not no_fail(result), (user, result.kind, no_fail(result))


def test_receipts_per_recipient_and_variant(tour):
    box = _kinds(tour.mailbox(tour.alfa, ALFA_USER))
    # completa to the To recipient, sintetica to the Cc one; brief; sintetica x2 (beta and same-domain)
    assert box.count(Kind.CONSEGNA_COMPLETA) == 1
    assert box.count(Kind.CONSEGNA_BREVE) == 1
    assert box.count(Kind.CONSEGNA_SINTETICA) >= 3
    assert box.count(Kind.ACCETTAZIONE) == 6
    assert box.count(Kind.NON_ACCETTAZIONE) == 1 and box.count(Kind.NON_ACCETTAZIONE_VIRUS) == 1
    assert box.count(Kind.MANCATA_CONSEGNA) == 1
    assert box.count(Kind.MANCATA_CONSEGNA_VIRUS) == 1


def test_timeouts_only_for_the_silent_recipient(tour):
    notices = [parse_message(m) for m in tour.mailbox(tour.alfa, ALFA_USER)]
    timeouts = [m for m in notices if m.kind in (Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H)]
    assert {m.daticert.consegna for m in timeouts} == {SILENT_USER}
    assert [m.kind for m in timeouts].count(Kind.PREAVVISO_12H) == 1
    assert [m.kind for m in timeouts].count(Kind.MANCATA_CONSEGNA_24H) == 1


def test_non_pec_recipient_gets_the_signed_envelope(tour):
    got = [parse_message(raw) for _, _, raw in tour.external.messages]
    assert any(m.kind is Kind.BUSTA_TRASPORTO and m.signature.verification.ok for m in got)  # ENV-15


def test_virus_was_quarantined_at_both_ends(tour):
    assert tour.alfa.store.quarantined() and tour.beta.store.quarantined()
    assert not any(EICAR_REF in m for m in tour.mailbox(tour.beta, BETA_USER))  # VIR-05


def test_event_log_records_every_step(tour):
    events = {e["event"] for e in tour.alfa.store.events()}
    assert {"accepted", "not-accepted", "queued", "sent", "service-notice"} <= events

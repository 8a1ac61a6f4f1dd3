"""The counterpart against the reference provider as the target, over real SMTP on loopback.

One deployment for the module: the reference provider "Gestore Alfa S.p.A." (the target) and the
counterpart "Gestore Controparte S.p.A.", both in the same signed index; the counterpart's forgery
keys are written (and the revoked one put in the CRL) before alfa loads its trust material. Each test
uses its own counterpart recipient and subject, so the tests do not see each other's messages.
Every wait has a deadline.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from datetime import timedelta
from pathlib import Path

import pytest

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import check
from conformance.counterpart import Counterpart, OrdinaryDomain, forge
from conformance.counterpart.smtp import free_port
from conformance.pec.constants import ERRORE_NO_DEST, Kind
from conformance.pec.parse import parse_message
from conformance.pec.pki import load_forgery_material, load_pki_directory, write_forgery_material
from conformance.reference.config import load_config
from conformance.reference.deploy import ProviderPlan, write_deployment
from conformance.reference.provider import ReferenceProvider

ALFA = "Gestore Alfa S.p.A."
MARIO, MARIO_PASSWORD = "mario.rossi@pec.alfa.test", "alfa-secret-1"
CP_NAME, CP_DOMAIN = "Gestore Controparte S.p.A.", "pec.controparte.test"
CP_USER = f"utente@{CP_DOMAIN}"
EXTERNAL = "carlo.neri@example.org"
# Scaled timers: the 12 h notice after 2 s, the 24 h one in the middle of [3 s, 3.5 s].
TIMERS = {"preavviso": 2.0, "timeout": 3.5, "window_start": 3.0, "scheduler_interval": 0.05,
          "retry_interval": 0.3}
WAIT = 10.0


class World:
    def __init__(self, directory: Path):
        plans = [
            ProviderPlan(ALFA, ("pec.alfa.test",), {MARIO: MARIO_PASSWORD, "giulia.neri@pec.alfa.test": "alfa-2"}),
            ProviderPlan(CP_NAME, (CP_DOMAIN,), {CP_USER: "unused"}),
        ]
        paths = write_deployment(directory, plans, timers=TIMERS)
        pki = directory / "pki"
        self.layout = load_pki_directory(pki)
        self.forgery_paths = write_forgery_material(pki, self.layout, CP_NAME)
        self.forgeries = load_forgery_material(pki, CP_NAME)
        self.ca_file = pki / "ca" / "ca.pem"
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(str(pki / "tls" / "cert.pem"), str(pki / "tls" / "key.pem"))
        self.evidence: list[tuple[str, bytes, dict]] = []
        self.counterpart = Counterpart.from_layout(
            self.layout, CP_NAME, tls_context=server_tls, client_tls=self.client_tls(),
            evidence=lambda direction, raw, meta: self.evidence.append((direction, raw, meta))).start()
        self.external = OrdinaryDomain("example.org", tls_context=server_tls, client_tls=self.client_tls()).start()
        config = load_config(paths[0])
        config.routes[CP_DOMAIN] = self.counterpart.address
        config.routes["example.org"] = self.external.address
        self.alfa = ReferenceProvider(config)
        self.alfa.start()
        self.counterpart.target_incoming = self.alfa.incoming_address
        self.external.target_incoming = self.alfa.incoming_address
        self.creds = self.layout.provider(CP_NAME)

    def stop(self) -> None:
        self.counterpart.stop()
        self.external.stop()
        self.alfa.stop()

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.check_hostname = False
        return ctx

    # ------------------------------------------------------------------ alfa's user
    def submit(self, to: list[str], subject: str, *, cc: list[str] = (), tipo: str = "completa") -> str:
        """Mario sends through alfa's access point (STARTTLS + AUTH); returns alfa's PEC identifier."""
        raw = forge.original(MARIO, to, cc=list(cc), subject=subject, tipo_ricevuta=tipo)
        with smtplib.SMTP(*self.alfa.access_address, timeout=15) as s:
            s.starttls(context=self.client_tls())
            s.login(MARIO, MARIO_PASSWORD)
            assert s.mail(MARIO)[0] == 250
            for r in [*to, *cc]:
                assert s.rcpt(r)[0] == 250
            code, reply = s.data(raw)
        assert code == 250, reply
        return reply.decode().split()[-1]

    def mailbox(self, user: str = MARIO):
        return [parse_message(m) for m in self.alfa.maildirs.messages(user)]

    def wait_mailbox(self, predicate, count: int = 1, deadline: float = WAIT, user: str = MARIO):
        end = time.monotonic() + deadline
        while True:
            found = [m for m in self.mailbox(user) if predicate(m)]
            if len(found) >= count or time.monotonic() >= end:
                return found
            time.sleep(0.05)

    def tracking(self, ident: str):
        return {r.recipient: r for r in self.alfa.store.tracking_rows("t.identificativo = ?", (ident,))}

    def wait_tracking(self, ident: str, recipient: str, check, deadline: float = WAIT):
        end = time.monotonic() + deadline
        while True:
            row = self.tracking(ident).get(recipient)
            if (row is not None and check(row)) or time.monotonic() >= end:
                return row
            time.sleep(0.05)

    def idle(self, deadline: float = WAIT) -> bool:
        """Alfa's outbox empty and the counterpart's answers all sent."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.alfa.store.pending_count() == 0 and self.counterpart.pending() == 0:
                return True
            time.sleep(0.05)
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("counterpart"))
    try:
        yield w
    finally:
        w.stop()


def deadline(seconds: float = WAIT) -> float:
    return time.monotonic() + seconds


def ident_of(m) -> str | None:
    return m.daticert.identificativo if m.daticert is not None else None


def envelope_for(ident: str):
    return lambda r: r.message.kind is Kind.BUSTA_TRASPORTO and ident_of(r.message) == ident


def notice(kind: Kind, ident: str):
    return lambda m: m.kind is kind and ident_of(m) == ident


def answers(world: World, ident: str) -> list:
    """What the counterpart sent in answer to a transaction, once everything in flight has settled."""
    assert world.idle()
    return world.counterpart.sent_matching(lambda s: s.related == ident)


# ---------------------------------------------------------------------------------------------
# The target sends, the counterpart answers


def test_normal_presa_and_consegna(world):
    rcpt = f"normale@{CP_DOMAIN}"
    world.counterpart.set_behaviour("normal", recipients=[rcpt])
    ident = world.submit([rcpt], "Prova normale")
    got = world.counterpart.wait(envelope_for(ident), deadline())
    assert got is not None, world.counterpart.errors
    assert got.tls and got.verified and got.behaviour == "normal"
    assert got.mail_from == MARIO and got.rcpts == [rcpt]
    consegne = world.wait_mailbox(notice(Kind.CONSEGNA_COMPLETA, ident))
    assert len(consegne) == 1 and consegne[0].daticert.consegna == rcpt
    assert consegne[0].postacert is not None
    row = world.wait_tracking(ident, rcpt, lambda r: r.presa_at is not None and r.consegna_at is not None)
    assert row is not None and row.presa_at is not None and row.consegna_at is not None
    sent = answers(world, ident)
    assert [s.kind for s in sent] == [str(Kind.PRESA_IN_CARICO), str(Kind.CONSEGNA_COMPLETA)]
    assert all(s.outcome.code == 250 and s.outcome.tls for s in sent)
    assert sent[0].rcpts == [world.alfa.config.receipt_mailbox]  # the mailReceipt from the index (D21)
    assert sent[1].rcpts == [MARIO]
    # The presa in carico never reaches a user (GEN-07).
    assert not world.wait_mailbox(notice(Kind.PRESA_IN_CARICO, ident), deadline=0)
    # Evidence of what came in was taken before the 250, of what went out before sending.
    assert any(d == "in" and raw == got.raw for d, raw, _ in world.evidence)
    assert sum(1 for d, raw, _ in world.evidence if d == "out" and raw in {s.raw for s in sent}) == 2


def test_variants_and_one_presa_per_transaction(world):
    to, cc = f"breve@{CP_DOMAIN}", f"copia@{CP_DOMAIN}"
    world.counterpart.set_behaviour("normal", recipients=[to, cc])
    ident = world.submit([to], "Prova breve", cc=[cc], tipo="breve")
    assert world.counterpart.wait(envelope_for(ident), deadline()) is not None
    brief = world.wait_mailbox(notice(Kind.CONSEGNA_BREVE, ident))
    concise = world.wait_mailbox(notice(Kind.CONSEGNA_SINTETICA, ident))
    assert [m.daticert.consegna for m in brief] == [to]
    assert [m.daticert.consegna for m in concise] == [cc]  # a Cc recipient gets sintetica (CON-09)
    assert b".hash" in brief[0].postacert
    presa = [s for s in answers(world, ident) if s.kind == str(Kind.PRESA_IN_CARICO)]
    assert len(presa) == 1
    assert sorted(parse_message(presa[0].raw).daticert.ricezione) == sorted([to, cc])


def test_silent_gives_12h_and_24h_notices(world):
    rcpt = f"silenzio@{CP_DOMAIN}"
    world.counterpart.set_behaviour("silent", recipients=[rcpt])
    ident = world.submit([rcpt], "Prova silenzio")
    got = world.counterpart.wait(envelope_for(ident), deadline())
    assert got is not None and got.behaviour == "silent"
    assert world.wait_mailbox(notice(Kind.PREAVVISO_12H, ident))
    assert world.wait_mailbox(notice(Kind.MANCATA_CONSEGNA_24H, ident))
    assert answers(world, ident) == []


def test_presa_only_gives_24h_notice_only(world):
    rcpt = f"presa@{CP_DOMAIN}"
    world.counterpart.set_behaviour("presa-only", recipients=[rcpt])
    ident = world.submit([rcpt], "Prova solo presa")
    assert world.wait_mailbox(notice(Kind.MANCATA_CONSEGNA_24H, ident))
    # The 12 h notice would have come before the 24 h one: the presa in carico suppressed it (D26).
    assert not world.wait_mailbox(notice(Kind.PREAVVISO_12H, ident), deadline=0)
    assert [s.kind for s in answers(world, ident)] == [str(Kind.PRESA_IN_CARICO)]
    assert world.tracking(ident)[rcpt].presa_at is not None


def test_reject_recipient_gives_mancata_consegna(world):
    rcpt = f"inesistente@{CP_DOMAIN}"
    world.counterpart.set_behaviour("reject-recipient", recipients=[rcpt])
    ident = world.submit([rcpt], "Prova rifiuto")
    found = world.wait_mailbox(notice(Kind.MANCATA_CONSEGNA, ident))
    assert len(found) == 1
    d = found[0].daticert
    assert d.consegna == rcpt and d.errore == ERRORE_NO_DEST
    assert d.errore_esteso == f"5.1.1 - {CP_NAME} - indirizzo non valido"


def test_virus_found_gives_mancata_consegna_per_virus(world):
    rcpt = f"infetto@{CP_DOMAIN}"
    world.counterpart.set_behaviour("virus-found", recipients=[rcpt])
    ident = world.submit([rcpt], "Prova virus rilevato")
    found = world.wait_mailbox(notice(Kind.MANCATA_CONSEGNA_VIRUS, ident))
    assert len(found) == 1 and found[0].daticert.consegna == rcpt
    sent = answers(world, ident)
    assert [s.kind for s in sent] == [str(Kind.PRESA_IN_CARICO), str(Kind.RILEVAZIONE_VIRUS)]
    assert all(s.rcpts == [world.alfa.config.receipt_mailbox] for s in sent)


def test_delayed_answers_later(world):
    rcpt = f"lento@{CP_DOMAIN}"
    world.counterpart.set_behaviour("delayed", delay=0.6, recipients=[rcpt])
    ident = world.submit([rcpt], "Prova ritardo")
    got = world.counterpart.wait(envelope_for(ident), deadline())
    assert got is not None and got.behaviour == "delayed"
    assert world.wait_mailbox(notice(Kind.CONSEGNA_COMPLETA, ident))
    sent = answers(world, ident)
    assert sent and min(s.at for s in sent) - got.at >= 0.6


def test_forged_receipt_is_not_trusted(world):
    """A consegna whose signature is corrupted reaches the user only inside an anomaly envelope."""
    rcpt = f"falsario@{CP_DOMAIN}"
    world.counterpart.set_behaviour("normal", recipients=[rcpt], transform=forge.bad_signature)
    ident = world.submit([rcpt], "Prova ricevuta falsa")
    anomalies = world.wait_mailbox(lambda m: m.kind is Kind.BUSTA_ANOMALIA and "Prova ricevuta falsa" in m.subject)
    assert anomalies
    assert not world.wait_mailbox(notice(Kind.CONSEGNA_COMPLETA, ident), deadline=0)
    assert world.tracking(ident)[rcpt].consegna_at is None


def test_envelope_to_an_ordinary_domain(world):
    """ENV-15: the envelope for a non-PEC recipient reaches the ordinary domain, with unaltered routing."""
    rcpt = f"misto@{CP_DOMAIN}"
    world.counterpart.set_behaviour("normal", recipients=[rcpt])
    ident = world.submit([rcpt, EXTERNAL], "Prova destinatario ordinario")
    got = world.external.wait(envelope_for(ident), deadline())
    assert got is not None and got.rcpts == [EXTERNAL] and got.mail_from == MARIO and got.tls


# ---------------------------------------------------------------------------------------------
# The counterpart sends, the target answers


def cp_original(subject: str) -> bytes:
    return forge.original(CP_USER, [MARIO], subject=subject)


def test_valid_envelope_is_delivered_and_answered(world):
    env, t = forge.envelope(world.creds, cp_original("Busta valida"), is_pec_domain=world.layout.index.is_pec_domain)
    outcome = world.counterpart.send(t.mittente, [MARIO], env)
    assert outcome.code == 250 and outcome.tls, outcome.transcript
    assert any(line.startswith("C: STARTTLS") for line in outcome.transcript)
    assert world.wait_mailbox(notice(Kind.BUSTA_TRASPORTO, t.identificativo))
    cp = world.counterpart
    presa = cp.wait(lambda r: r.message.kind is Kind.PRESA_IN_CARICO and ident_of(r.message) == t.identificativo,
                    deadline())
    consegna = cp.wait(lambda r: r.message.kind is Kind.CONSEGNA_COMPLETA
                       and ident_of(r.message) == t.identificativo, deadline())
    assert presa is not None and presa.rcpts == [world.creds.receipt_mailbox] and presa.verified
    assert presa.message.daticert.ricezione == [MARIO]
    assert consegna is not None and consegna.rcpts == [CP_USER] and consegna.verified
    assert presa.behaviour == consegna.behaviour == "recorded"


def _no_answer(world: World, ident: str) -> list:
    assert world.idle()
    return world.counterpart.matching(lambda r: ident_of(r.message) == ident
                                      and r.message.kind is not Kind.BUSTA_TRASPORTO)


FORGERIES = {
    "unsigned": (lambda w, env: forge.unsigned(env), "non è firmato"),
    "bad-signature": (lambda w, env: forge.bad_signature(env), "firma del messaggio non è valida"),
    "tampered": (lambda w, env: forge.tampered(env), "firma del messaggio non è valida"),
    "unknown-signer": (lambda w, env: forge.signed_by(env, *w.forgeries["foreign"]), "non appartiene"),
    "expired": (lambda w, env: forge.signed_by(env, *w.forgeries["expired"]), "certificato di firma non è valido"),
    "not-yet-valid": (lambda w, env: forge.signed_by(env, *w.forgeries["not-yet-valid"]),
                      "certificato di firma non è valido"),
    "revoked": (lambda w, env: forge.signed_by(env, *w.forgeries["revoked"]), "revoked"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forgery_becomes_anomaly(world, name):
    make, reason = FORGERIES[name]
    subject = f"Busta falsa {name}"
    env, t = forge.envelope(world.creds, cp_original(subject))
    outcome = world.counterpart.send(t.mittente, [MARIO], make(world, env))
    assert outcome.code == 250, outcome.transcript
    found = world.wait_mailbox(lambda m: m.kind is Kind.BUSTA_ANOMALIA and subject in m.subject)
    assert len(found) == 1
    assert reason in (found[0].text_plain or ""), found[0].text_plain
    assert not world.wait_mailbox(notice(Kind.BUSTA_TRASPORTO, t.identificativo), deadline=0)
    assert _no_answer(world, t.identificativo) == []


def test_ordinary_mail_becomes_anomaly(world):
    raw, outcome = world.external.send_ordinary(EXTERNAL, [MARIO], "Posta ordinaria dalla rete")
    assert outcome.code == 250 and not outcome.tls
    found = world.wait_mailbox(lambda m: m.kind is Kind.BUSTA_ANOMALIA and "Posta ordinaria dalla rete" in m.subject)
    assert len(found) == 1 and found[0].postacert == raw


def test_eicar_envelope_gives_rilevazione_virus(world):
    env, t = forge.with_eicar(world.creds, sender=CP_USER, to=[MARIO], subject="Busta con virus")
    assert world.counterpart.send(t.mittente, [MARIO], env).code == 250
    got = world.counterpart.wait(lambda r: r.message.kind is Kind.RILEVAZIONE_VIRUS
                                 and ident_of(r.message) == t.identificativo, deadline())
    assert got is not None and got.rcpts == [world.creds.receipt_mailbox] and got.verified
    assert got.message.daticert.consegna == MARIO
    assert _no_answer(world, t.identificativo)  # presa in carico and rilevazione virus (D24), no consegna
    assert not any(r.message.kind is Kind.CONSEGNA_COMPLETA for r in _no_answer(world, t.identificativo))
    assert not world.wait_mailbox(notice(Kind.BUSTA_TRASPORTO, t.identificativo), deadline=0)


def test_sha1_envelope_is_accepted(world):
    env, t = forge.sha1_envelope(world.creds, cp_original("Busta SHA-1"))
    assert b"micalg=sha-1" in env
    assert world.counterpart.send(t.mittente, [MARIO], env).code == 250
    assert world.wait_mailbox(notice(Kind.BUSTA_TRASPORTO, t.identificativo))
    assert world.counterpart.wait(lambda r: r.message.kind is Kind.CONSEGNA_COMPLETA
                                  and ident_of(r.message) == t.identificativo, deadline()) is not None


# ---------------------------------------------------------------------------------------------
# The pieces on their own


def test_forgery_material(world):
    crl = world.layout.crl
    serial = world.forgeries["revoked"][1].serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    record = next(r for r in world.alfa.index.records if r.provider_name == CP_NAME)
    assert len(record.certificates) == 6  # its own and the expired, not-yet-valid, revoked, renewed, to-revoke ones
    assert world.alfa.index.records_for_certificate(world.forgeries["foreign"][1]) == []
    assert world.forgeries["foreign"][1].issuer != world.layout.ca.certificate.subject
    assert set(world.forgery_paths) >= {"expired", "not-yet-valid", "revoked", "foreign", "crl", "manifest"}


def test_send_never_raises_and_wait_has_a_deadline(world):
    closed = ("127.0.0.1", free_port())
    outcome = world.counterpart.send(CP_USER, [MARIO], b"Subject: x\r\n\r\nx\r\n", to=closed, timeout=2)
    assert outcome.code == 0 and outcome.text and not outcome.tls
    plain = OrdinaryDomain(CP_DOMAIN).start()  # no TLS context: no STARTTLS offered
    try:
        refused = world.counterpart.send(CP_USER, [MARIO], b"Subject: x\r\n\r\nx\r\n", to=plain.address)
        assert refused.code == 0 and "STARTTLS" in refused.text and plain.received == []
        relay = world.counterpart.send(CP_USER, ["x@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n", to=plain.address,
                                       starttls=False)
        assert relay.code == 550
    finally:
        plain.stop()
    start = time.monotonic()
    assert world.counterpart.wait(lambda r: False, time.monotonic() + 0.2) is None
    assert time.monotonic() - start < 2


def test_evidence_failure_answers_451(world):
    def broken(direction, raw, meta):
        raise OSError("disk full")

    cp = Counterpart(world.creds, index=world.layout.index, ca_certificates=[world.layout.ca.certificate],
                     crls=[world.layout.crl], tls_context=world.counterpart.tls_context, evidence=broken).start()
    try:
        outcome = world.counterpart.send(MARIO, [CP_USER], forge.ordinary(MARIO, CP_USER, "x"), to=cp.address)
        assert outcome.code == 451 and outcome.tls
        assert cp.received == []
    finally:
        cp.stop()


@pytest.mark.parametrize("name,shift", [("not-yet-valid", timedelta(days=1)), ("expired", timedelta(days=-2))])
def test_signing_time_claimed_by_the_signer_is_not_trusted(world, name, shift):
    """The certificate is judged at arrival, not at the CMS signingTime the signer chose (a time inside
    the certificate's validity): the envelope still becomes an anomaly (RIC-06)."""
    key, cert = world.forgeries[name]
    subject = f"Busta con data di firma scelta ({name})"
    env, t = forge.envelope(world.creds, cp_original(subject))
    anchor = cert.not_valid_before_utc if shift > timedelta(0) else cert.not_valid_after_utc
    forged = forge.signed_by(env, key, cert, signing_time=anchor + shift)
    assert world.counterpart.send(t.mittente, [MARIO], forged).code == 250
    arrived = world.wait_mailbox(lambda m: subject in m.subject)
    assert [m.kind for m in arrived] == [Kind.BUSTA_ANOMALIA]
    assert "certificato di firma non è valido" in (arrived[0].text_plain or "")


def test_what_crosses_the_wire_passes_the_validator(world):
    """Every message alfa sent to the counterpart and every answer the counterpart sent (forged ones
    aside) has no FAIL: both sides build on the same core, and the validator agrees with both."""
    assert world.idle()
    ctx = ValidationContext(index=world.layout.index, ca_certificates=[world.layout.ca.certificate],
                            crls=[world.layout.crl])
    items = [r.raw for r in world.counterpart.received + world.external.received]
    items += [s.raw for s in world.counterpart.sent if s.related and not s.transformed]
    assert len(items) >= 20
    for raw in items:
        bad = [f"{f.check} {f.requirements} {f.message}" for f in check(raw, ctx).findings
               if f.verdict in (Verdict.FAIL, Verdict.ERROR)]
        assert bad == [], parse_message(raw).subject


def test_no_errors_on_either_side(world):
    """Runs last: nothing failed inside the counterpart or the reference provider during the module."""
    assert world.idle()
    assert world.counterpart.errors == []
    assert world.external.errors == []
    assert world.alfa.errors == []

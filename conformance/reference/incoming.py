"""Incoming point (punto di ricezione): verification, presa in carico, anomaly, virus detection.

RIC-03..14 (existence, origin, validity, formal correctness), RIC-09..12 (one presa in carico per
transaction to the sender provider's mailReceipt, decision D21), ANO-01..15, VIR-05..08 (a
verified infected envelope: presa in carico, then one rilevazione virus per recipient, D24),
RIC-13 (verified notices delivered unchanged), GEN-07 and GEN-08 (the service mailbox receives
only presa in carico and rilevazione virus, never a user).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..checks.findings import ValidationContext, Verdict
from ..checks.validator import validate_parsed
from ..pec import build as b
from ..pec.constants import CODE_VIRUS, Kind
from ..pec.index import certificate_hash
from ..pec.parse import ParsedMessage, parse_message
from ..pec.verify import verify_origin

# Findings of the validator that make a signed message formally incorrect (RIC-08): format rules only;
# trust findings are the job of verify_origin and the SHOULD-level ones never reject.
_FORMAL_PREFIXES = ("FMT-", "GEN-", "ENV-", "ACC-1", "CON-", "VIR-", "TMO-", "ANO-", "RIC-10", "RIC-12")
_NOTICE_KINDS = {
    Kind.ACCETTAZIONE, Kind.NON_ACCETTAZIONE, Kind.NON_ACCETTAZIONE_VIRUS, Kind.MANCATA_CONSEGNA_VIRUS,
    Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA, Kind.MANCATA_CONSEGNA,
    Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H, Kind.BUSTA_ANOMALIA,
}


_CONSEGNE = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)


class Refused(Exception):
    """The message is refused at SMTP level (code and text)."""

    def __init__(self, code: int, text: str):
        super().__init__(f"{code} {text}")
        self.reply = f"{code} {text}"


@dataclass
class Outgoing:
    mail_from: str
    rcpts: list[str]
    data: bytes
    kind: Kind
    message_id: str | None = None


@dataclass
class InboundResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    delivered: list[tuple[str, bytes]] = field(default_factory=list)  # (mailbox, bytes) written
    events: list[tuple[str, Kind | None, list[str]]] = field(default_factory=list)
    tracking: list[tuple[str, list[str], str]] = field(default_factory=list)  # (identificativo, rcpts, field)
    quarantine: list[tuple[str, bytes]] = field(default_factory=list)
    virus_notices: list[ParsedMessage] = field(default_factory=list)


# The validator's families that judge the form of a message; the signature was judged by verify_origin.
_FORMAL_FAMILIES = ("structure.", "headers.", "daticert.")


def formal_problem(msg: ParsedMessage, ctx: ValidationContext) -> str | None:
    """The first format FAIL the validator finds, as a short reason; None when the message is correct."""
    result = validate_parsed(msg, ctx, families=_FORMAL_FAMILIES)
    crashed = [f for f in result.findings if f.verdict is Verdict.ERROR and f.message.startswith("check crashed")]
    if crashed:  # our own failure: answer 451 and let the sender retry, never call its message malformed
        raise RuntimeError(f"formal check failed: {crashed[0].message}")
    for f in result.findings:
        if f.verdict in (Verdict.FAIL, Verdict.ERROR) and any(r.startswith(_FORMAL_PREFIXES)
                                                              for r in f.requirements):
            return f"{f.message} ({', '.join(f.requirements)})"
    return None


class IncomingPoint:
    def __init__(self, provider):
        self.p = provider

    def _context(self) -> ValidationContext:
        p = self.p
        return ValidationContext(index=p.index, ca_certificates=p.ca_certificates, crls=p.crls,
                                 now=datetime.now(UTC))

    def check_recipient(self, address: str) -> str | None:
        """RCPT TO: our users, our service mailbox, or an unknown mailbox of our domains (which gets a
        non-delivery notice later, CON-18); other domains are not relayed."""
        if not self.p.config.is_local(address):
            return "550 5.7.1 relay not permitted"
        return None

    def process(self, mail_from: str, rcpts: list[str], raw: bytes, *, peer: str = "") -> InboundResult:
        p = self.p
        now = datetime.now(UTC).replace(microsecond=0)
        msg = parse_message(raw)
        out = InboundResult()
        rcpts = [r.lower() for r in rcpts]
        service = [r for r in rcpts if r == p.config.receipt_mailbox.lower()]
        users = [r for r in rcpts if r not in service]
        # the deviation of inc-no-crl-check: revocation never looked up
        origin = verify_origin(msg, p.index, p.ca_certificates, [] if p.faults.on("inc-no-crl-check") else p.crls,
                               now)
        if origin.verified and p.faults.on("inc-first-certificate-only") and not self._first_certificate(msg, origin):
            origin.verified, origin.reason = False, "certificato non presente nell'indice"
        if origin.verified and origin.digest == "sha1" and p.faults.on("inc-sha1-refused"):
            origin.verified, origin.reason = False, "firma SHA-1 non accettata"
        verified = origin.verified
        problem = formal_problem(msg, self._context()) if verified and not p.faults.on("inc-malformed-as-pec") \
            else None
        # Notices for our service mailbox carry no original to scan; everything meant for users is scanned.
        infected = p.scanner.scan(raw, msg.root) if users else None
        if infected and not verified and p.faults.on("inc-ordinary-not-scanned"):
            infected = None

        if service:
            self._service_notice(msg, verified and problem is None, service, out)
        if not users:
            return out
        if not verified and not p.faults.on("inc-unverified-as-pec"):
            return self._ordinary(msg, mail_from, users, raw, origin.reason, infected, now, out)
        if problem is not None:
            # Signed by a provider but not a correct envelope or notice: MUST travel in an anomaly (ANO-14).
            if p.faults.on("inc-malformed-dropped"):
                out.events.append(("malformed-dropped", msg.kind, users))
                return out
            return self._anomaly(mail_from, users, raw, problem, now, out)
        if msg.kind is Kind.BUSTA_TRASPORTO:
            return self._envelope(msg, origin, mail_from, users, raw, infected, now, out)
        if msg.kind in _NOTICE_KINDS:
            if infected and p.faults.on("inc-infected-notice-as-anomaly"):
                return self._anomaly(mail_from, users, raw, "virus nel messaggio", now, out)
            if infected and not p.faults.on("inc-virus-forwarded") and not p.faults.on("inc-infected-notice-forwarded"):
                out.quarantine.append(("virus in una ricevuta (VIR-15)", raw))
                out.events.append(("quarantined", msg.kind, users))
                return out
            if p.faults.on("trk-late-consegna-dropped") and msg.daticert and msg.kind in _CONSEGNE and \
                    p.store.tracking_rows("t.identificativo = ? AND t.timeout = 'sent'", (msg.daticert.identificativo,)):
                return out  # the fault: tracking ended with the 24 h notice, the late consegna is thrown away
            stored = _rewrapped(raw) if p.faults.on("inc-notice-rewrapped") else raw
            for user in users:
                if p.delivery.deliver_unchanged(user, stored):
                    out.delivered.append((user, stored))
            out.events.append(("notice-delivered", msg.kind, users))
            if p.faults.on("inc-receipt-for-notice") and msg.daticert is not None:
                t = b.Transaction.from_daticert(msg.daticert)
                for user in users:
                    notice = b.build_avvenuta_consegna(p.gestore, t, now, recipient=user, variant="sintetica")
                    out.outgoing.append(Outgoing(p.config.service_address, [mail_from or t.mittente], notice,
                                                 Kind.CONSEGNA_SINTETICA))
            if msg.kind in (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA) and msg.daticert:
                who = msg.daticert.consegna or ""
                if p.faults.on("trk-recipient-from-text"):  # the deviation: the recipient read from the text
                    named = [a for a in re.findall(r"[\w.+-]+@[\w.-]+\w", msg.text_plain or "")
                             if a.lower() != msg.daticert.mittente.lower()]
                    who = named[-1] if named else who
                out.tracking.append((msg.daticert.identificativo, [who], "consegna_at"))
            elif msg.kind in (Kind.MANCATA_CONSEGNA, Kind.MANCATA_CONSEGNA_VIRUS) and msg.daticert:
                # A negative outcome is known: this provider stops R's timers (both readings pass, D25).
                out.tracking.append((msg.daticert.identificativo, [msg.daticert.consegna or ""], "closed"))
            return out
        if msg.kind in (Kind.PRESA_IN_CARICO, Kind.RILEVAZIONE_VIRUS):
            # Provider notices addressed to a user: never shown to users (GEN-07).
            out.events.append(("provider-notice-to-user-dropped", msg.kind, users))
            return out
        return self._anomaly(mail_from, users, raw, f"tipo di messaggio non riconosciuto ({msg.kind})", now, out)

    def _first_certificate(self, msg: ParsedMessage, origin) -> bool:
        """For inc-first-certificate-only: whether the signer is the first certificate of its index record
        (the deviation ignores the others a record lists during a renewal, IDX-12)."""
        der = origin.certificate_der
        records = self.p.index.records_for_certificate(der) if der is not None else []
        first = [(r.certificates[:1], r.certificate_hashes[:1]) for r in records]
        return any(der in ders or certificate_hash(der) in (h.lower() for h in hashes) for ders, hashes in first)

    # ------------------------------------------------------------------------------------------
    def _service_notice(self, msg: ParsedMessage, ok: bool, service: list[str], out: InboundResult) -> None:
        """Presa in carico and rilevazione virus for messages our users sent (GEN-08)."""
        if not ok or msg.daticert is None:
            out.events.append(("service-mailbox-ignored", msg.kind, service))
            return
        d = msg.daticert
        if msg.kind is Kind.PRESA_IN_CARICO:
            out.tracking.append((d.identificativo, list(d.ricezione), "presa_at"))
        elif msg.kind is Kind.RILEVAZIONE_VIRUS:
            out.virus_notices.append(msg)
            out.tracking.append((d.identificativo, [d.consegna or ""], "closed"))
        out.events.append(("service-notice", msg.kind, service))

    def _ordinary(self, msg, mail_from, users, raw, reason, infected, now, out: InboundResult) -> InboundResult:
        p = self.p
        if infected and p.faults.on("inc-ordinary-virus-notice") and mail_from:
            # the deviation: infected Internet mail answered with a PEC virus notice (VIR-14)
            t = self._ordinary_transaction(msg, mail_from, now)
            notice = b.build_mancata_consegna_virus(p.gestore, t, now, recipient=users[0], virus=infected,
                                                    code=CODE_VIRUS)
            out.outgoing.append(Outgoing(p.config.service_address, [mail_from], notice, Kind.MANCATA_CONSEGNA_VIRUS))
            return out
        if infected:
            raise Refused(554, "5.7.1 virus detected in ordinary mail; message refused")
        if p.config.ordinary_mail == "refuse" or p.faults.on("inc-ordinary-refused"):
            raise Refused(550, "5.7.1 only certified mail is accepted here")
        if not any(p.config.users.get(u) for u in users):
            if p.faults.on("inc-ordinary-unknown-dropped"):
                return out  # the deviation: taken with 250 and thrown away, the sender never learns (RIC-02)
            if p.faults.on("inc-ordinary-gets-mancata") and mail_from:
                # the deviation: a PEC non-delivery notice for ordinary mail (CON-21)
                t = self._ordinary_transaction(msg, mail_from, now)
                notice = b.build_mancata_consegna(p.gestore, t, now, recipient=users[0], errore="no-dest",
                                                  errore_esteso=b.error_string("5.1.1", p.gestore, "casella inesistente"))
                out.outgoing.append(Outgoing(p.config.service_address, [mail_from], notice, Kind.MANCATA_CONSEGNA))
                return out
            # Ordinary mail fails the ordinary way, with an SMTP reply (never a PEC notice, CON-21).
            raise Refused(550, "5.1.1 mailbox unknown")
        if p.faults.on("inc-ordinary-delivered-bare"):
            for user in users:  # the deviation: ordinary mail put in the mailbox as it came, no anomaly envelope
                if p.config.users.get(user) and p.delivery.deliver_unchanged(user, raw):
                    out.delivered.append((user, raw))
            return out
        return self._anomaly(mail_from, users, raw, reason or "messaggio di posta ordinaria", now, out)

    def _ordinary_transaction(self, msg: ParsedMessage, mail_from: str, now) -> b.Transaction:
        """What a fault that wrongly answers ordinary mail with a PEC notice reports it as."""
        return b.Transaction(mittente=mail_from, destinatari=[], risposte=mail_from, oggetto=msg.subject or "",
                             identificativo=self.p.gestore.new_msgid(now), msgid=None, ricevuta=None)

    def _anomaly(self, mail_from, users, raw, reason, now, out: InboundResult) -> InboundResult:
        p = self.p
        envelope = b.build_busta_anomalia(p.gestore, raw, now, reverse_path=mail_from, error=reason)
        envelope = p.finish(Kind.BUSTA_ANOMALIA, envelope)
        # Stored as a mail delivery agent would, with the reverse path it travels with on top: the original's,
        # so a DSN still finds the original sender (ANO-11).
        reverse = p.config.service_address if p.faults.on("inc-anomaly-routing-lost") else mail_from
        head = envelope.split(b"\r\n\r\n", 1)[0].lower()
        if reverse and not head.startswith(b"return-path:") and b"\r\nreturn-path:" not in head:
            envelope = f"Return-Path: <{reverse}>\r\n".encode() + envelope
        for user in users:
            if p.config.users.get(user) and p.delivery.deliver_unchanged(user, envelope):
                out.delivered.append((user, envelope))
        out.events.append(("anomaly", Kind.BUSTA_ANOMALIA, users))
        if p.faults.on("dlv-receipt-for-anomaly"):
            parsed = parse_message(raw)
            if parsed.daticert is not None:
                t = b.Transaction.from_daticert(parsed.daticert)
                for user in users:
                    notice = b.build_avvenuta_consegna(p.gestore, t, now, recipient=user, variant="sintetica")
                    out.outgoing.append(Outgoing(p.config.service_address, [t.mittente], notice,
                                                 Kind.CONSEGNA_SINTETICA))
        return out

    def _envelope(self, msg, origin, mail_from, users, raw, infected, now, out: InboundResult) -> InboundResult:
        p = self.p
        d = msg.daticert
        t = b.Transaction.from_daticert(d)
        sender_domain = d.mittente.rpartition("@")[2]
        receipt_box = None
        if origin.certificate_der is not None:
            receipt_box = p.index.receipt_mailbox_for(origin.certificate_der, sender_domain)
        if receipt_box is None:  # only reachable with a fault that lets an unverified envelope through
            record = p.index.record_for_domain(sender_domain)
            receipt_box = record.mail_receipt if record is not None else d.mittente
        no_presa = p.faults.on("inc-no-presa-in-carico") or (infected and p.faults.on("inc-no-presa-for-infected"))
        groups = [[u] for u in users] if p.faults.on("inc-presa-per-recipient") else [users]
        for covered in ([] if no_presa else groups):
            presa = b.build_presa_in_carico(p.gestore, t, now, receipt_mailbox=receipt_box, ricezione=covered)
            presa = p.finish(Kind.PRESA_IN_CARICO, presa)
            to = d.mittente if p.faults.on("inc-presa-to-sender") else receipt_box
            out.outgoing.append(Outgoing(p.config.service_address, [to], presa, Kind.PRESA_IN_CARICO))
            if p.faults.on("inc-presa-to-user"):
                for user in users:
                    if p.delivery.deliver_unchanged(user, presa):
                        out.delivered.append((user, presa))
        if infected and not p.faults.on("inc-virus-forwarded"):
            out.quarantine.append(("virus in una busta di trasporto (VIR-05, VIR-12)", raw))
            out.events.append(("virus-detected", Kind.BUSTA_TRASPORTO, users))
            if p.faults.on("inc-no-rilevazione-virus"):
                return out
            for user in users[:1] if p.faults.on("inc-one-rilevazione") else users:
                notice = b.build_rilevazione_virus(p.gestore, t, now, recipient=user, receipt_mailbox=receipt_box,
                                                   virus=infected)
                notice = p.finish(Kind.RILEVAZIONE_VIRUS, notice)
                to = d.mittente if p.faults.on("inc-rilevazione-to-user") else receipt_box
                out.outgoing.append(Outgoing(p.config.service_address, [to], notice, Kind.RILEVAZIONE_VIRUS))
            return out
        for i, user in enumerate(users):
            outcome = p.delivery.deliver_envelope(msg, user, now)
            if outcome.delivered:
                out.delivered.append((user, raw))
            if i and p.faults.on("dlv-first-recipient-receipt-only"):
                continue  # the deviation: one receipt per envelope, for its first recipient
            if outcome.notice is not None:
                out.outgoing.append(Outgoing(p.config.service_address, [d.mittente], outcome.notice, outcome.kind))
        out.events.append(("envelope-received", Kind.BUSTA_TRASPORTO, users))
        return out


def _rewrapped(raw: bytes) -> bytes:
    """For inc-notice-rewrapped: base64 bodies re-cut to 64-character lines, as a relay that re-encodes does
    (SEC-08); the signed bytes change with them."""
    def cut(m: re.Match) -> bytes:
        data = re.sub(rb"\s+", b"", m.group(0))
        return b"\r\n".join(data[i:i + 64] for i in range(0, len(data), 64)) + b"\r\n"
    return re.sub(rb"(?:[A-Za-z0-9+/=]{76}\r\n)+(?:[A-Za-z0-9+/=]{1,76}\r\n)?", cut, raw)

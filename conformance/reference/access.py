"""Access point (punto di accesso): formal checks, virus scan, acceptance and the transport envelope.

ACC-03..09 and SIZ-01 (a failed check gives an avviso di non accettazione, decision D30), ACC-19
and decision D14 (From must be the authenticated user: SMTP refusal), LIM-01/LIM-02 and decision
D17 (limits are floors), VIR-02..04 (virus: notice and quarantine), ACC-12..18, ENV-01..16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr

from ..pec import build as b
from ..pec.constants import DESTINATARIO_CERTIFICATO, TIPO_BREVE, TIPO_COMPLETA, Kind
from ..pec.mime import MimeError
from .incoming import Outgoing, Refused


@dataclass
class Submission:
    user: str
    mail_from: str
    rcpts: list[str]
    raw: bytes


@dataclass
class AccessResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    accepted: bool = False
    reason: str | None = None
    identificativo: str | None = None
    transaction: b.Transaction | None = None
    pec_recipients: list[str] = field(default_factory=list)
    quarantine: bytes | None = None
    instant: datetime | None = None  # to the second: the Date and daticert of the receipt and envelope
    dispatched: float = 0.0  # precise: the 12 h / 24 h timers run from here


def _addresses(values: list) -> list[str]:
    return [a.lower() for _, a in getaddresses([str(v) for v in values]) if a]


class AccessPoint:
    def __init__(self, provider):
        self.p = provider

    def formal_problem(self, s: Submission, o: b.Original) -> str | None:
        """The first failed formal check (RFC 6109 section 3.1.1), as the reason of the non-acceptance."""
        p, h = self.p, o.headers
        froms = _addresses(h.get_all("from") or [])
        if (len(froms) != 1 or "@" not in froms[0]) and not (froms and p.faults.on("acc-two-from-accepted")):
            return "il campo From deve contenere un solo indirizzo valido"
        to = _addresses(h.get_all("to") or [])
        if not to and not p.faults.on("acc-cc-only-accepted"):
            return "il campo To deve contenere almeno un indirizzo valido"
        if froms[0] != s.mail_from.lower() and not p.faults.on("acc-two-from-accepted") \
                and not p.faults.on("acc-from-unchecked"):
            return "il mittente SMTP non coincide con il campo From"
        header_rcpts = set(to) | set(_addresses(h.get_all("cc") or []))
        if set(r.lower() for r in s.rcpts) != header_rcpts and not p.faults.on("acc-hidden-recipient-accepted"):
            return "i destinatari SMTP non coincidono con i campi To e Cc"
        if any(str(v).strip() for v in h.get_all("bcc") or []) and not p.faults.on("acc-bcc-accepted"):
            return "il campo Bcc non è ammesso"
        limits = p.config.limits
        max_recipients = min(limits.max_recipients, 49) if p.faults.on("acc-max-49-recipients") else \
            limits.max_recipients
        if len(header_rcpts) > max_recipients:
            return f"numero di destinatari superiore al limite di {max_recipients}"
        # the deviations: the size alone, or no size limit at all
        copies = 1 if p.faults.on("acc-size-per-message") else len(header_rcpts)
        max_total = min(limits.max_total_size, 20_000_000) if p.faults.on("acc-size-limit-20mb") else \
            limits.max_total_size
        if len(s.raw) * copies > max_total and not p.faults.on("acc-no-size-limit"):
            return f"dimensione per numero di destinatari superiore al limite di {limits.max_total_size} byte"
        return None

    def submit(self, s: Submission) -> AccessResult:
        p = self.p
        dispatched = datetime.now(UTC)
        now = dispatched.replace(microsecond=0)
        if parseaddr(s.mail_from)[1].lower() != s.user.lower() and not p.faults.on("acc-sender-mismatch-accepted"):
            raise Refused(553, "5.7.1 sender address differs from the authenticated user")
        try:
            o = b.read_original(s.raw, s.mail_from.lower())
        except MimeError as exc:
            raise Refused(554, f"5.6.0 unreadable message: {exc}") from None
        if parseaddr(str(o.headers.get("from") or ""))[1].lower() not in ("", s.user.lower()) \
                and not p.faults.on("acc-sender-mismatch-accepted") and not p.faults.on("acc-from-unchecked"):
            raise Refused(553, "5.7.1 From differs from the authenticated user")
        ident = p.gestore.new_msgid(now)
        is_pec = p.index.is_pec_domain
        if p.faults.on("acc-domain-case-sensitive"):  # the deviation: managedDomains compared as written
            is_pec = lambda domain: p.index.is_pec_domain(domain) and domain == domain.lower()  # noqa: E731
        t = b.Transaction.from_original(o, ident, is_pec)
        if p.faults.on("acc-tipo-ricevuta-ignored"):
            t.ricevuta = TIPO_COMPLETA
        if p.faults.on("env-default-breve") and o.tipo_ricevuta is None:
            t.ricevuta = TIPO_BREVE
        result = AccessResult(identificativo=ident, transaction=t, instant=now, dispatched=dispatched.timestamp())
        problem = self.formal_problem(s, o)
        if problem is not None:
            notice = b.build_non_accettazione(p.gestore, t, now, problem)
            result.reason = problem
            result.outgoing.append(Outgoing(p.config.service_address, [s.mail_from],
                                            p.finish(Kind.NON_ACCETTAZIONE, notice), Kind.NON_ACCETTAZIONE))
            return result
        virus = p.scanner.scan(s.raw)
        if virus and not p.faults.on("acc-virus-not-detected"):
            notice = b.build_non_accettazione_virus(p.gestore, t, now, virus)
            result.reason = f"virus: {virus}"
            result.quarantine = s.raw
            result.outgoing.append(Outgoing(p.config.service_address, [s.mail_from],
                                            p.finish(Kind.NON_ACCETTAZIONE_VIRUS, notice),
                                            Kind.NON_ACCETTAZIONE_VIRUS))
            return result
        result.accepted = True
        if p.faults.on("acc-local-bypass") and all(p.config.is_local(r) for r in s.rcpts):
            # the deviation: mail between our own users skips the envelope and the receipts altogether
            for r in s.rcpts:
                p.delivery.deliver_unchanged(r.lower(), s.raw)
            return result
        if not p.faults.on("acc-no-accettazione"):
            receipt = p.finish(Kind.ACCETTAZIONE, b.build_accettazione(p.gestore, t, now))
            result.outgoing.append(Outgoing(p.config.service_address, [s.mail_from], receipt, Kind.ACCETTAZIONE))
        envelope = b.build_busta_trasporto(p.gestore, o, t, now)
        envelope = p.finish(Kind.BUSTA_TRASPORTO, envelope)
        # Routing data unchanged (ENV-14): MAIL FROM the sender, RCPT TO every original recipient.
        mail_from = p.config.service_address if p.faults.on("env-mail-from-service") else s.mail_from
        rcpts = list(s.rcpts)
        if p.faults.on("env-to-only"):  # the deviation: the envelope is routed to the To recipients alone
            rcpts = [r for r in rcpts if r.lower() in {a.lower() for a in o.to}]
        if p.faults.on("env-pec-recipients-only"):
            rcpts = [r for r in rcpts if p.index.is_pec_domain(r.rpartition("@")[2])]
        if not p.faults.on("acc-no-envelope") and rcpts:
            result.outgoing.append(Outgoing(mail_from, rcpts, envelope, Kind.BUSTA_TRASPORTO,
                                            message_id=f"<{ident}>"))
        result.pec_recipients = [r.address for r in t.destinatari if r.tipo == DESTINATARIO_CERTIFICATO]
        return result

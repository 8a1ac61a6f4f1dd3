"""PEC header fields, subjects, From/To/Reply-To/Date/Message-ID of every kind.

GEN-03..06, GEN-09 (From is the service address the index registers), FMT-18, FMT-19, FMT-22, HDR-01, ENV-01..10, ENV-16, ANO-03..08, ACC-10, ACC-12, ACC-16,
RIC-10, CON-05, CON-19, CON-23, VIR-03, VIR-07, VIR-10, TMO-09.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parseaddr

from cryptography import x509

from ..pec.constants import (
    H_MITTENTE,
    H_RICEVUTA,
    H_RIFERIMENTO,
    H_TIPO_RICEVUTA,
    H_TRASPORTO,
    H_VERIFICA_SICUREZZA,
    ON_BEHALF_OF,
    PEC_HEADERS,
    PER_CONTO_DI,
    RICEVUTA_OF,
    RICEVUTA_VALUES,
    SUBJECT_PREFIX,
    TIPI_RICEVUTA,
    TO_PROVIDER_KINDS,
    TRASPORTO_OF,
    TRASPORTO_VALUES,
    VIRUS_FLAG_KINDS,
    Kind,
)
from ..pec.parse import ParsedMessage, address_list
from ..pec.trust import certificate_emails
from .findings import ValidationContext, check, failed, info, passed, warned
from .signature import _record_for

# The header rule of each kind: the requirement whose template lists its fields.
HEADER_REQ = {
    Kind.ACCETTAZIONE: "ACC-12",
    Kind.NON_ACCETTAZIONE: "ACC-10",
    Kind.NON_ACCETTAZIONE_VIRUS: "VIR-03",
    Kind.BUSTA_TRASPORTO: "ENV-04",
    Kind.PRESA_IN_CARICO: "RIC-10",
    Kind.BUSTA_ANOMALIA: "ANO-06",
    Kind.RILEVAZIONE_VIRUS: "VIR-07",
    Kind.MANCATA_CONSEGNA_VIRUS: "VIR-10",
    Kind.CONSEGNA_COMPLETA: "CON-05",
    Kind.CONSEGNA_BREVE: "CON-05",
    Kind.CONSEGNA_SINTETICA: "CON-05",
    Kind.MANCATA_CONSEGNA: "CON-19",
    Kind.PREAVVISO_12H: "TMO-09",
    Kind.MANCATA_CONSEGNA_24H: "TMO-09",
}
_ENVELOPES = (Kind.BUSTA_TRASPORTO, Kind.BUSTA_ANOMALIA)
# The rule naming each envelope's own X-Trasporto value: cited on both sides (present and right, or not).
_TYPE_HEADER_REQ = {Kind.BUSTA_TRASPORTO: ("ENV-02",), Kind.BUSTA_ANOMALIA: ("ANO-04",)}
# No PEC message predates e-mail as deployed; an earlier Date is a broken one.
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
_DAY_NAME = re.compile(r"\s*([A-Za-z]{3}),")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # RFC 5322 day-name, by datetime.weekday()
_DATE_YEAR = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3}\s+(\d{2,4})\b")
_MSGID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")


def _pec(kind: Kind) -> bool:
    return kind not in (Kind.ORDINARY, Kind.UNKNOWN)


def _norm(value: str | None) -> str:
    return re.sub(r"\s+", " ", value or "").strip()


def _clue_list(clues) -> str:
    return ", ".join(f"{c.source} ({c.detail}{'' if c.kind is None else ' -> ' + str(c.kind)})" for c in clues) \
        or "none"


@check("headers.pec-type", ["GEN-04", "FMT-19", "HDR-01", "ENV-02", "ANO-04"], needs_body=False)
def check_pec_type(msg: ParsedMessage, ctx: ValidationContext):
    """Exactly one identifying PEC header with a value from Appendix A; names match case-insensitively.

    The kind itself comes from every clue (parse.Classification); this check says which clues agreed
    and which disagreed, and fails a PEC message whose identifying header is missing or wrong.
    """
    trasporto = msg.header_all(H_TRASPORTO)
    ricevuta = msg.header_all(H_RICEVUTA)
    c = msg.classification
    if c is not None and c.clues:
        agreeing, disagreeing = c.agreeing(), c.disagreeing()
        yield info("GEN-04", f"classified as {msg.kind} by {c.decided_by}; clues agreeing: {_clue_list(agreeing)}"
                             f"; disagreeing: {_clue_list(disagreeing)}",
                   actual="; ".join(f"{x.source}: {x.detail}" for x in c.clues))
    if not trasporto and not ricevuta:
        if msg.kind not in (Kind.ORDINARY, Kind.UNKNOWN):
            problem = c.header_problem if c is not None else "missing"
            name = H_TRASPORTO if msg.kind in _ENVELOPES else H_RICEVUTA
            reqs = ("GEN-04", "FMT-19", "HDR-01") if problem.startswith("misspelt") else ("GEN-04",)
            reqs = (*reqs, *_TYPE_HEADER_REQ.get(msg.kind, ()))
            yield failed(reqs, f"a PEC message ({msg.kind}, by its {c.decided_by if c else 'clues'}) without its "
                               f"identifying header: {problem}", expected=f"{name}: {_value_of(msg.kind)}",
                         actual=problem)
        elif ctx.expected_kind is not None:
            yield failed("GEN-04", "no X-Ricevuta or X-Trasporto header: not a PEC system message",
                         expected=f"the header of {ctx.expected_kind}", actual="none")
        else:
            yield info("GEN-04", "no PEC header and no other PEC clue: ordinary mail, judged only for what it is",
                       decision="D34")
        if ctx.expected_kind is not None and msg.kind is not ctx.expected_kind and msg.kind is not Kind.ORDINARY:
            yield failed(HEADER_REQ.get(ctx.expected_kind, "GEN-04"), "the message is not the expected kind",
                         expected=str(ctx.expected_kind), actual=str(msg.kind))
        return
    if len(trasporto) + len(ricevuta) > 1:
        yield failed("GEN-04", "more than one identifying PEC header",
                     actual="; ".join([f"X-Trasporto: {v}" for v in trasporto] +
                                      [f"X-Ricevuta: {v}" for v in ricevuta]))
    for value in trasporto:
        if value not in TRASPORTO_VALUES:
            yield failed(("GEN-04", "FMT-19", *_TYPE_HEADER_REQ.get(msg.kind, ())),
                         "X-Trasporto value is not one of Appendix A",
                         expected=" | ".join(TRASPORTO_VALUES), actual=value)
    if ricevuta and msg.kind in _TYPE_HEADER_REQ:
        # An envelope (by its other clues) identified by X-Ricevuta: its X-Trasporto is missing.
        yield failed(("GEN-04", *_TYPE_HEADER_REQ[msg.kind]), f"{msg.kind} identified by X-Ricevuta, not X-Trasporto",
                     expected=f"{H_TRASPORTO}: {_value_of(msg.kind)}", actual="; ".join(ricevuta))
    for value in ricevuta:
        if value not in RICEVUTA_VALUES:
            yield failed(("GEN-04", "FMT-19"), "X-Ricevuta value is not one of Appendix A",
                         expected=" | ".join(RICEVUTA_VALUES), actual=value)
    decided_by_header = c is None or c.header_problem is None
    if msg.kind is not Kind.UNKNOWN and len(trasporto) + len(ricevuta) == 1 and decided_by_header:
        reqs = {Kind.BUSTA_TRASPORTO: ("GEN-04", "FMT-19", "ENV-02"),
                Kind.BUSTA_ANOMALIA: ("GEN-04", "FMT-19", "ANO-04")}.get(msg.kind, ("GEN-04", "FMT-19"))
        yield passed(reqs, f"identified as {msg.kind} by its Italian header and value")
    canonical = {h.lower(): h for h in PEC_HEADERS}
    # Matching names case-insensitively is the suite's own behaviour (HDR-01, a self-test of the suite); a
    # variant spelling met is only worth reporting.
    for name in msg.header_names():
        spelled = canonical.get(name.lower())
        if spelled and spelled != name:
            yield info("HDR-01", f"PEC header spelt {name!r}; names compare case-insensitively",
                       expected=spelled, actual=name, decision="D4")
    if ctx.expected_kind is not None and msg.kind is not ctx.expected_kind:
        yield failed(HEADER_REQ.get(ctx.expected_kind, "GEN-04"), "the message is not the expected kind",
                     expected=str(ctx.expected_kind), actual=str(msg.kind))


def _value_of(kind: Kind) -> str:
    return TRASPORTO_OF.get(kind) or RICEVUTA_OF.get(kind) or "?"


@check("headers.subject", ["FMT-18", "FMT-20", *sorted(set(HEADER_REQ.values()))], needs_body=False)
def check_subject(msg: ParsedMessage, ctx: ValidationContext):
    """Subject = the kind's exact prefix, ': ', and the original subject."""
    prefix = SUBJECT_PREFIX.get(msg.kind)
    if prefix is None:
        return
    subject = msg.subject
    req = ("FMT-18", HEADER_REQ[msg.kind])
    if not subject.startswith(prefix):
        yield failed(req, "wrong subject prefix", expected=prefix + "<original subject>", actual=subject[:200])
        return
    yield passed(req, f"subject prefix {prefix.strip()!r}")
    d = msg.daticert
    if d is not None and d.oggetto is not None and _norm(subject[len(prefix):]) != _norm(d.oggetto):
        yield failed(("FMT-20",), "subject after the prefix differs from daticert oggetto",
                     expected=d.oggetto, actual=subject[len(prefix):])


def _anomaly_senders(msg: ParsedMessage) -> set[str]:
    """Who counts as the original sender of an anomaly envelope (decision D23): the received From, or the
    SMTP reverse path (seen as the Return-Path of the received message or of the anomaly envelope)."""
    found = set()
    inner = msg.original_headers
    for value in ([inner.get("from"), inner.get("return-path")] if inner is not None else []) + \
            [msg.header("return-path")]:
        address = parseaddr(str(value or ""))[1].lower()
        if address:
            found.add(address)
    return found


def _one_address(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    found = getaddresses([value])
    if len(found) != 1 or "@" not in found[0][1]:
        return None
    return found[0]


_SERVICE: dict[tuple[int, tuple[str, ...]], tuple[object, frozenset[str]]] = {}


def _service_addresses(msg: ParsedMessage, ctx: ValidationContext) -> frozenset[str] | None:
    """The service address(es) of the provider that signed `msg`, as registered: the e-mail addresses of the
    certificates its providers index records list (D2: the service address is the signing certificate's
    address). None when no index record holds the signer's certificate."""
    _cert, records = _record_for(msg, ctx)
    if not records or ctx.index is None:
        return None
    names = tuple(sorted({r.provider_name.casefold() for r in records}))
    key = (id(ctx.index), names)
    entry = _SERVICE.get(key)
    if entry is None or entry[0] is not ctx.index:
        found: set[str] = set()
        for record in ctx.index.records:
            if record.provider_name.casefold() in names:
                for der in record.certificates:
                    try:
                        found.update(e.lower() for e in certificate_emails(x509.load_der_x509_certificate(der)))
                    except ValueError:
                        continue
        if len(_SERVICE) > 256:
            _SERVICE.clear()
        entry = _SERVICE[key] = (ctx.index, frozenset(found))
    return entry[1] or None


@check("headers.from", ["GEN-06", "GEN-09", "ENV-05", "ANO-07", "FMT-22"], needs_body=False)
def check_from(msg: ParsedMessage, ctx: ValidationContext):
    """From: the provider service address; envelopes put the original sender in a quoted display name."""
    if not _pec(msg.kind):
        return
    raw = msg.header("from")
    parsed = _one_address(raw)
    envelope = msg.kind in _ENVELOPES
    req = ("ENV-05" if msg.kind is Kind.BUSTA_TRASPORTO else "ANO-07") if envelope else "GEN-06"
    unquoted = re.match(r"\s*((?:Per conto di|On behalf of):[^<\"]*)<([^<>]+)>\s*$", raw or "", re.IGNORECASE)
    if envelope and unquoted:
        # `Per conto di: a@b <x@y>` unquoted: ':' and '@' are specials, so it does not parse as one mailbox.
        yield failed(("FMT-22", req), "the From display name is not an RFC 5322 quoted-string",
                     expected=f'"{PER_CONTO_DI}<sender>" <service address>', actual=raw, decision="D2")
        return
    if parsed is None:
        yield failed(req, "From does not hold exactly one address", actual=raw or "missing")
        return
    display, address = parsed
    if len(msg.header_all("from")) > 1:
        yield failed(req, "more than one From field", actual="; ".join(msg.header_all("from")))
    service = _service_addresses(msg, ctx)
    if service is None:
        # Which address the provider registered is not known here: a From that parses shows nothing of GEN-09.
        yield info("GEN-09", f"From {address} not compared: the signer's service address is unknown (no "
                             "providers index record holds the signing certificate)", decision="D2")
    elif address.lower() not in service:
        yield failed(("GEN-09", req), "From address is not the provider's service address",
                     expected=" | ".join(sorted(service)), actual=address, decision="D2")
    else:
        yield passed(("GEN-09", req), f"From {address} is the provider's service address", decision="D2")
    if not envelope:
        return
    d = msg.daticert
    sender = d.mittente if d is not None else None
    senders = {sender.lower()} if sender else set()
    if msg.kind is Kind.BUSTA_ANOMALIA:
        senders = _anomaly_senders(msg)
        sender = next(iter(sorted(senders)), None)
    raw_display = raw.split("<")[0].strip()
    if display and not raw_display.startswith('"'):
        yield failed("FMT-22", "the From display name is not an RFC 5322 quoted-string",
                     expected=f'"{PER_CONTO_DI}<sender>" <service address>', actual=raw, decision="D2")
    if display.startswith(PER_CONTO_DI):
        named = display[len(PER_CONTO_DI):].strip()
        yield passed((req, "FMT-22"), "display name 'Per conto di: <sender>'", decision="D2")
    elif display.startswith(ON_BEHALF_OF):
        named = display[len(ON_BEHALF_OF):].strip()
        yield warned(req, "display name uses the RFC's English 'On behalf of:'", expected=PER_CONTO_DI,
                     actual=display, decision="D2")
    else:
        yield failed(req, "From display name does not name the original sender on whose behalf it is sent",
                     expected=f"{PER_CONTO_DI}<original sender>", actual=display or "no display name",
                     decision="D2")
        return
    if senders and named.lower() not in senders:
        yield failed(req, "the display name names another sender", expected=" | ".join(sorted(senders)),
                     actual=named, decision="D23")
    if sender and address.lower() in senders and (service is None or address.lower() not in service):
        # Around a PEC message the original From may be this very service address (D23): not an author then.
        yield failed(req, "From address is the original author, not the provider", actual=address)


@check("headers.to", ["GEN-01", "IDX-11", *sorted(set(HEADER_REQ.values()))], needs_body=False)
def check_to(msg: ParsedMessage, ctx: ValidationContext):
    """User notices go to the original sender; presa in carico and rilevazione virus to a mailReceipt."""
    if not _pec(msg.kind):
        return
    req = HEADER_REQ[msg.kind]
    to = msg.addresses("to")
    # RFC 5322 section 3.6.3: a To field holds at least one address (one field parsed alone only if needed).
    fields = msg.header_all("to")
    empty = [v for v in fields if not v.strip()] if len(to) >= len(fields) else \
        [v for v in fields if not any(a for _, a in getaddresses([v]))]
    if empty:
        yield failed((req, "GEN-01") if msg.kind not in _ENVELOPES else ("ENV-01",), "a To field without an address",
                     expected="one or more addresses", actual=repr(empty[0]))
    if msg.kind in _ENVELOPES or msg.daticert is None:
        return
    sender = msg.daticert.mittente.lower()
    if not to:
        if not empty:
            yield failed((req, "GEN-01"), f"{msg.kind} has no To address", expected="a recipient", actual="missing")
        return
    if msg.kind in TO_PROVIDER_KINDS:
        if sender in to:
            yield failed((req, "GEN-01"), f"{msg.kind} is addressed to the user, not to the sending provider",
                         expected="the sending provider's mailReceipt", actual=", ".join(to))
            return
        if ctx.index is not None:
            record = ctx.index.record_for_domain(sender.rpartition("@")[2])
            if record is not None:
                same_provider = {r.mail_receipt.lower() for r in ctx.index.records
                                 if r.provider_name == record.provider_name}
                if record.mail_receipt.lower() in to:
                    yield passed((req, "IDX-11"), f"addressed to the sending provider's mailReceipt {to[0]}",
                                 decision="D21")
                    return
                if set(to) & same_provider:
                    yield warned((req, "IDX-11"), "sent to another record of the sending provider",
                                 expected=record.mail_receipt, actual=", ".join(to), decision="D21")
                    return
                yield failed((req, "IDX-11"), "not addressed to the sending provider's mailReceipt",
                             expected=record.mail_receipt, actual=", ".join(to), decision="D21")
                return
            receipts = {r.mail_receipt.lower() for r in ctx.index.records}
            if not set(to) & receipts:
                yield failed((req, "IDX-11"), "not addressed to any mailReceipt of the providers index",
                             expected=" | ".join(sorted(receipts)), actual=", ".join(to), decision="D21")
                return
        yield passed(req, f"addressed to {', '.join(to)}")
        return
    if to != [sender]:
        yield failed((req, "GEN-01"), "a user notice must go to the original sender only", expected=sender,
                     actual=", ".join(to) or "missing", decision="D3" if req == "TMO-09" else None)
    else:
        yield passed((req, "GEN-01"), "addressed to the original sender")


@check("headers.date", ["GEN-06"], needs_body=False)
def check_date(msg: ParsedMessage, ctx: ValidationContext):
    """Date present and valid (its instant is compared with daticert by the time checks)."""
    if not _pec(msg.kind):
        return
    value = msg.header("date")
    parsed = msg.date()
    if parsed is None or parsed.tzinfo is None:
        yield failed("GEN-06", "Date missing or not an RFC 5322 date with a zone", actual=value or "missing")
        return
    now = ctx.now or datetime.now(UTC)
    # The stdlib reads a year written 0001 as 2001 (two-digit rule): take the year as written.
    year = _DATE_YEAR.search(value)
    written = int(year.group(1)) if year and len(year.group(1)) == 4 else parsed.year
    if written < EARLIEST_DATE.year or not EARLIEST_DATE <= parsed <= now + timedelta(days=2):
        # The Date is the time of the event (GEN-06): a year 1 or a date ahead of the clock is no event time.
        yield failed("GEN-06", "Date is not a plausible event time", expected=f"between {EARLIEST_DATE.year} "
                     "and now", actual=value)
        return
    day = _DAY_NAME.match(value)
    if day and day.group(1).title() != _DAYS[parsed.weekday()]:
        yield failed("GEN-06", "Date day-of-week disagrees with the date (RFC 5322 section 3.3)",
                     expected=_DAYS[parsed.weekday()], actual=value)
        return
    yield passed("GEN-06", f"Date {value}")


@check("headers.message-id", ["GEN-04", "ACC-15", "ENV-08", "ANO-03"], needs_body=False)
def check_message_id(msg: ParsedMessage, ctx: ValidationContext):
    """Message-ID present and valid; the envelope's is the PEC identifier of its daticert."""
    if not _pec(msg.kind):
        return
    values = msg.header_all("message-id")
    req = {Kind.BUSTA_TRASPORTO: "ACC-15", Kind.BUSTA_ANOMALIA: "ANO-03"}.get(msg.kind, "GEN-04")
    if len(values) != 1 or not _MSGID.match(values[0]):
        yield failed(req, "Message-ID missing, repeated or not of the form <left@right>",
                     actual="; ".join(values) or "missing", decision="D12")
        return
    yield passed(req, "valid Message-ID", decision="D12")
    d = msg.daticert
    if msg.kind is Kind.BUSTA_TRASPORTO and d is not None:
        if values[0].strip("<>") != d.identificativo.strip("<>"):
            yield failed("ENV-08", "envelope Message-ID differs from daticert identificativo",
                         expected=f"<{d.identificativo}>", actual=values[0])
        else:
            yield passed("ENV-08", "envelope Message-ID is the PEC identifier")


@check("headers.riferimento", ["GEN-05", "ENV-09", "FMT-24"], needs_body=False)
def check_riferimento(msg: ParsedMessage, ctx: ValidationContext):
    """X-Riferimento-Message-ID carries the client msgid whenever daticert has one, and only then."""
    if not _pec(msg.kind):
        return
    values = msg.header_all(H_RIFERIMENTO)
    req = ("ENV-09",) if msg.kind is Kind.BUSTA_TRASPORTO else ("GEN-05",)
    if any(not v.strip() for v in values):
        yield failed(req, "X-Riferimento-Message-ID is present but empty", expected="the client msgid <...>",
                     actual="empty", decision="D31")
        return
    if msg.kind is Kind.BUSTA_ANOMALIA or msg.daticert is None:
        return
    msgid = msg.daticert.msgid
    if msgid:
        if not values:
            yield failed(req, "X-Riferimento-Message-ID missing although the client sent a Message-ID",
                         expected=msgid, actual="missing", decision="D31")
        elif _norm(values[0]) != _norm(msgid):
            yield failed(req, "X-Riferimento-Message-ID differs from daticert msgid", expected=msgid,
                         actual=values[0], decision="D31")
        else:
            yield passed(req, "X-Riferimento-Message-ID equals the client msgid")
    elif values:
        yield failed((*req, "FMT-24"), "X-Riferimento-Message-ID present but daticert has no msgid",
                     expected="both absent or both equal", actual=values[0], decision="D31")
    else:
        yield passed(req, "no client Message-ID: header and msgid both absent", decision="D31")


@check("headers.virus-flag", ["VIR-03", "VIR-10", "VIR-07"], needs_body=False)
def check_virus_flag(msg: ParsedMessage, ctx: ValidationContext):
    """X-VerificaSicurezza: errore on the two virus notices; X-Mittente on rilevazione virus."""
    d = msg.daticert
    flag = msg.header(H_VERIFICA_SICUREZZA)
    if msg.kind in VIRUS_FLAG_KINDS:
        yield passed(HEADER_REQ[msg.kind], "X-VerificaSicurezza: errore")
    elif d is not None and d.errore == "virus" and d.tipo in ("non-accettazione", "errore-consegna"):
        req = "VIR-03" if d.tipo == "non-accettazione" else "VIR-10"
        yield failed(req, "virus notice without X-VerificaSicurezza: errore", expected="errore",
                     actual=flag or "missing")
    if msg.kind is Kind.RILEVAZIONE_VIRUS:
        mittente = msg.header(H_MITTENTE)
        if not mittente:
            yield failed("VIR-07", "X-Mittente missing", expected=d.mittente if d else "original sender")
        elif d is not None and parseaddr(mittente)[1].lower() != d.mittente.lower():
            yield failed("VIR-07", "X-Mittente differs from daticert mittente", expected=d.mittente,
                         actual=mittente)
        else:
            yield passed("VIR-07", "X-Mittente names the original sender")


@check("headers.tipo-ricevuta", ["ENV-10", "ENV-16"])
def check_tipo_ricevuta(msg: ParsedMessage, ctx: ValidationContext):
    """The envelope says which receipt was asked for, in X-TipoRicevuta and daticert ricevuta alike."""
    if msg.kind is not Kind.BUSTA_TRASPORTO:
        return
    value = msg.header(H_TIPO_RICEVUTA)
    ricevuta = msg.daticert.ricevuta if msg.daticert is not None else None
    if value is None:
        if ricevuta is not None:
            yield warned("ENV-10", "X-TipoRicevuta missing (the ricevuta element still carries the type)",
                         expected="X-TipoRicevuta: " + ricevuta, actual="missing", decision="D20")
        else:
            yield failed("ENV-10", "neither X-TipoRicevuta nor a ricevuta element", decision="D20")
        return
    if value not in TIPI_RICEVUTA:
        yield failed("ENV-10", "X-TipoRicevuta value not completa, breve or sintetica",
                     expected=" | ".join(TIPI_RICEVUTA), actual=value)
        return
    if ricevuta is not None and ricevuta != value:
        yield failed("ENV-16", "X-TipoRicevuta and daticert ricevuta disagree", expected=value, actual=ricevuta)
        return
    inner = _inner_headers(msg)
    if inner is not None:
        asked = str(inner.get(H_TIPO_RICEVUTA) or "").strip()
        wanted = asked if asked in TIPI_RICEVUTA else TIPI_RICEVUTA[0]
        if value != wanted:
            yield failed("ENV-16", "the envelope does not carry the receipt type the original asked for",
                         expected=wanted, actual=value)
            return
    yield passed(("ENV-10", "ENV-16"), f"X-TipoRicevuta: {value}")


@check("headers.sender", ["ENV-06"], needs_body=False)
def check_sender(msg: ParsedMessage, ctx: ValidationContext):
    """Sender, when present on an envelope, equals From."""
    if msg.kind is not Kind.BUSTA_TRASPORTO:
        return
    sender = msg.header("sender")
    if sender is None:
        yield info("ENV-06", "not applicable: no Sender field (optional), nothing to compare with From", decision="D13")
        return
    if parseaddr(sender)[1].lower() != msg.address("from"):
        yield failed("ENV-06", "Sender differs from From", expected=msg.header("from"), actual=sender,
                     decision="D13")
    else:
        yield passed("ENV-06", "Sender equals From", decision="D13")


@check("headers.bcc", ["GEN-03", "ACC-08"], needs_body=False)
def check_bcc(msg: ParsedMessage, ctx: ValidationContext):
    """No Bcc addresses in a PEC message or in the original it carries."""
    if not _pec(msg.kind):
        return
    leaks = [v for v in msg.header_all("bcc") if v.strip()]
    if msg.original_headers is not None and msg.kind is not Kind.BUSTA_ANOMALIA:
        leaks += [v for v in msg.original_headers.get_all("bcc") or [] if str(v).strip()]
    if leaks:
        yield failed(("ACC-08", "GEN-03"), "a Bcc header with addresses travels in PEC",
                     expected="no Bcc value", actual="; ".join(str(v) for v in leaks))


def _inner_headers(msg: ParsedMessage):
    return msg.original_headers


@check("headers.inherited", ["ENV-01", "ENV-07", "ANO-03", "ANO-08", "ACC-16", "CON-23", "GEN-12"],
       needs_body=False)
def check_inherited(msg: ParsedMessage, ctx: ValidationContext):
    """Envelopes copy To, Cc (and Reply-To) from the message they carry; the carried original's Message-ID
    is the PEC identifier with the client one kept in X-Riferimento-Message-ID."""
    inner = _inner_headers(msg)
    if inner is None or msg.kind not in (*_ENVELOPES, Kind.CONSEGNA_COMPLETA):
        return
    d = msg.daticert
    if msg.kind in _ENVELOPES:
        req = "ENV-01" if msg.kind is Kind.BUSTA_TRASPORTO else "ANO-03"
        for name in ("to", "cc"):
            outer = sorted(msg.addresses(name))
            carried = sorted(address_list([str(v) for v in inner.get_all(name) or []]))
            if outer != carried:
                yield failed(req, f"{name.title()} differs from the carried message", expected=", ".join(carried),
                             actual=", ".join(outer))
            else:
                yield passed((req, "GEN-12"), f"{name.title()} inherited unchanged")
        reply_to = msg.header("reply-to")
        inner_reply = inner.get("reply-to")
        inner_from = parseaddr(str(inner.get("from") or ""))[1]
        rreq = "ENV-07" if msg.kind is Kind.BUSTA_TRASPORTO else "ANO-08"
        if inner_reply:
            ok = reply_to is not None and _norm(reply_to) == _norm(str(inner_reply))
            expected = str(inner_reply)
        else:
            allowed = {inner_from.lower(), d.mittente.lower() if d else ""}
            if msg.kind is Kind.BUSTA_ANOMALIA:
                allowed |= _anomaly_senders(msg)
            ok = reply_to is not None and parseaddr(reply_to)[1].lower() in allowed - {""}
            expected = inner_from
        if ok:
            yield passed(rreq, "Reply-To as the rules say")
        else:
            yield failed(rreq, "Reply-To is not the original one nor, when absent, the original sender",
                         expected=expected, actual=reply_to or "missing", decision="D23")
        if msg.kind is Kind.BUSTA_ANOMALIA:
            outer_id, inner_id = msg.header("message-id"), inner.get("message-id")
            if inner_id and _norm(outer_id) != _norm(str(inner_id)):
                yield failed("ANO-03", "anomaly Message-ID is not the received message's",
                             expected=str(inner_id), actual=outer_id or "missing")
            return
    if d is None:
        return
    req = "ACC-16" if msg.kind is Kind.BUSTA_TRASPORTO else "CON-23"
    inner_id = _norm(str(inner.get("message-id") or ""))
    if inner_id.strip("<>") != d.identificativo.strip("<>"):
        yield failed(req, "the carried original's Message-ID is not the PEC identifier",
                     expected=f"<{d.identificativo}>", actual=inner_id or "missing")
    else:
        yield passed(req, "carried original's Message-ID replaced by the PEC identifier")
    inner_ref = inner.get(H_RIFERIMENTO)
    if d.msgid and _norm(str(inner_ref or "")) != _norm(d.msgid):
        yield failed(req, "the carried original lacks X-Riferimento-Message-ID with the client msgid",
                     expected=d.msgid, actual=str(inner_ref) if inner_ref else "missing")

"""Builders for the 14 message kinds a PEC provider emits (RFC 6109 sections 3.1-3.3, 4.3, 4.4).

Pure functions: inputs are the issuing provider (name, domain, key, certificate), the data of the
transaction (what daticert's intestazione says), the instant and the kind-specific items; the
output is the complete signed message as bytes with CRLF line ends.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, getaddresses, parseaddr

from . import daticert as dc
from .constants import (
    CONSEGNA_VARIANT,
    DATICERT_NAME,
    DATICERT_TIPO_OF,
    DESTINATARIO_CERTIFICATO,
    ERRORE_ALTRO,
    ERRORE_NESSUNO,
    ERRORE_VIRUS,
    H_MITTENTE,
    H_RICEVUTA,
    H_RIFERIMENTO,
    H_TIPO_RICEVUTA,
    H_TRASPORTO,
    H_VERIFICA_SICUREZZA,
    HASH_SUFFIX,
    HEADING,
    LABEL_CERTIFICATA,
    LABEL_ORDINARIA,
    PER_CONTO_DI,
    POSTACERT_NAME,
    RICEVUTA_OF,
    SERVICE_LOCAL_PART,
    SUBJECT_PREFIX,
    TEXT_CHARSET,
    TIPI_RICEVUTA,
    TIPO_COMPLETA,
    TIPO_SINTETICA,
    TRASPORTO_ERRORE,
    TRASPORTO_POSTA_CERTIFICATA,
    VERIFICA_SICUREZZA_ERRORE,
    VIRUS_FLAG_KINDS,
    Kind,
)
from .daticert import Recipient
from .mime import (
    CRLF,
    attachment_part,
    b64_body,
    decode_text,
    encode_header_value,
    multipart,
    parse_headers,
    split_entity,
    split_multipart,
    text_part,
    walk_entity,
)
from .smime import PROTOCOLS, sign_entity

# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Gestore:
    """The provider that issues a message: its name as in the index, PEC domain and signing key."""

    name: str
    domain: str
    key: object
    certificate: object
    service_address: str = ""
    digest: str = "sha256"
    protocol: str = PROTOCOLS[0]
    # Lets a caller (the reference provider's fault switches) alter daticert before it is rendered.
    daticert_hook: Callable[[Kind, dc.DatiCert], dc.DatiCert] | None = None

    def render_daticert(self, kind: Kind, d: dc.DatiCert) -> bytes:
        return dc.render(self.daticert_hook(kind, d) if self.daticert_hook else d)

    def __post_init__(self) -> None:
        if not self.service_address:
            self.service_address = f"{SERVICE_LOCAL_PART}@{self.domain}"

    def new_msgid(self, instant: datetime | None = None) -> str:
        """A fresh PEC identifier, `<alphanumerics and dots>@<domain>` without angle brackets (ACC-15)."""
        stamp = (instant or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
        return f"opec.{stamp}.{secrets.token_hex(8)}@{self.domain}"

    def new_notice_id(self, instant: datetime | None = None) -> str:
        stamp = (instant or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
        return f"<ric.{stamp}.{secrets.token_hex(8)}@{self.domain}>"


def _address(value: str | None) -> str:
    return parseaddr(value or "")[1]


def _addresses(values: list[str]) -> list[str]:
    return [a for _, a in getaddresses(values) if a]


@dataclass
class Original:
    """A user's message as submitted, read without modifying its bytes."""

    raw: bytes
    headers: Message
    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    client_msgid: str | None
    reply_to: str | None
    tipo_ricevuta: str | None

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc]

    @property
    def requested_receipt(self) -> str:
        """The receipt type the sender asked for; absent or invalid reads as completa."""
        return self.tipo_ricevuta if self.tipo_ricevuta in TIPI_RICEVUTA else TIPO_COMPLETA


def read_original(raw: bytes, reverse_path: str | None = None) -> Original:
    header_block, _ = split_entity(raw)
    h = parse_headers(header_block)
    msgid = h.get("message-id")
    tipo = h.get(H_TIPO_RICEVUTA)
    return Original(
        raw=raw,
        headers=h,
        sender=reverse_path or _address(h.get("from")),
        to=_addresses(h.get_all("to") or []),
        cc=_addresses(h.get_all("cc") or []),
        subject=decode_text(h.get("subject")),
        client_msgid=str(msgid).strip() if msgid else None,
        reply_to=_unfold(h.get("reply-to")) if h.get("reply-to") else None,
        tipo_ricevuta=str(tipo).strip() if tipo else None,
    )


@dataclass
class Transaction:
    """What every message of one PEC transaction certifies (daticert intestazione and identifiers)."""

    mittente: str
    destinatari: list[Recipient]
    risposte: str
    oggetto: str
    identificativo: str
    msgid: str | None = None
    ricevuta: str = TIPO_COMPLETA

    @classmethod
    def from_original(cls, original: Original, identificativo: str, is_pec_domain=None) -> Transaction:
        def tipo(addr: str) -> str:
            if is_pec_domain is None:
                return DESTINATARIO_CERTIFICATO
            return DESTINATARIO_CERTIFICATO if is_pec_domain(addr.rpartition("@")[2]) else "esterno"

        return cls(
            mittente=original.sender,
            destinatari=[Recipient(a, tipo(a)) for a in original.recipients],
            risposte=_address(original.reply_to) if original.reply_to else original.sender,
            oggetto=original.subject,
            identificativo=identificativo,
            msgid=original.client_msgid,
            ricevuta=original.requested_receipt,
        )

    @classmethod
    def from_daticert(cls, d: dc.DatiCert) -> Transaction:
        return cls(
            mittente=d.mittente,
            destinatari=list(d.destinatari),
            risposte=d.risposte,
            oggetto=d.oggetto or "",
            identificativo=d.identificativo,
            msgid=d.msgid,
            ricevuta=d.ricevuta or TIPO_COMPLETA,
        )


@dataclass
class NoticeDetails:
    """Kind-specific items of a notice."""

    consegna: str | None = None
    ricezione: list[str] = field(default_factory=list)
    errore: str = ERRORE_NESSUNO
    errore_esteso: str | None = None
    reason: str | None = None
    ricevuta: str | None = None


def requested_variant(msg) -> str:
    """The receipt an envelope asks for: X-TipoRicevuta, else daticert ricevuta/@tipo, else completa."""
    value = msg.header(H_TIPO_RICEVUTA)
    if value in TIPI_RICEVUTA:
        return value
    if msg.daticert is not None and msg.daticert.ricevuta in TIPI_RICEVUTA:
        return msg.daticert.ricevuta
    return TIPO_COMPLETA


def variant_for(msg, recipient: str) -> str:
    """What a recipient of an envelope (a ParsedMessage) gets: the requested variant; a recipient only in Cc
    the concise one (CON-09); one To/Cc cannot classify counts as primary (CON-10, decision D28)."""
    to = {a.lower() for _, a in getaddresses(msg.header_all("to"))}
    cc = {a.lower() for _, a in getaddresses(msg.header_all("cc"))}
    r = recipient.lower()
    if r in cc and r not in to:
        return TIPO_SINTETICA
    return requested_variant(msg)


# ---------------------------------------------------------------------------------------------
# Human-readable text (data items per TXT-01; wording is informative only, D19)


def _when(instant: datetime) -> str:
    zona, giorno, ora = dc.data_fields(instant)
    return f"Il giorno {giorno} alle ore {ora} ({zona})"


def _statement(kind: Kind, t: Transaction, d: NoticeDetails) -> list[str]:
    rcpt = d.consegna or ""
    if kind is Kind.ACCETTAZIONE:
        return ["è stato accettato dal sistema ed inoltrato."]
    if kind is Kind.NON_ACCETTAZIONE:
        return [f"è stato rilevato un problema che ne impedisce l'accettazione a causa di: {d.reason}.",
                "Il messaggio non è stato accettato."]
    if kind is Kind.NON_ACCETTAZIONE_VIRUS:
        return [f"è stato rilevato un problema di sicurezza: {d.reason}.", "Il messaggio non è stato accettato."]
    if kind is Kind.BUSTA_TRASPORTO:
        return ["Il messaggio originale è incluso in allegato."]
    if kind is Kind.PRESA_IN_CARICO:
        return ["è stato accettato dal sistema."]
    if kind in CONSEGNA_VARIANT:
        return [f'ed indirizzato a "{rcpt}"', "è stato consegnato nella casella di destinazione."]
    if kind is Kind.MANCATA_CONSEGNA:
        return [f'e destinato all\'utente "{rcpt}"', f"è stato rilevato un errore {d.errore_esteso}.",
                "Il messaggio è stato rifiutato dal sistema."]
    if kind is Kind.RILEVAZIONE_VIRUS:
        return [f'e destinato all\'utente "{rcpt}"', f"è stato rilevato un problema di sicurezza: {d.reason}.",
                "Il messaggio non è stato inoltrato."]
    if kind is Kind.MANCATA_CONSEGNA_VIRUS:
        return [f'e destinato all\'utente "{rcpt}"', f"è stato rilevato un problema di sicurezza: {d.reason}.",
                f"Errore: {d.errore_esteso}.", "Il messaggio non è stato consegnato."]
    if kind is Kind.PREAVVISO_12H:
        return [f'e destinato all\'utente "{rcpt}"',
                "non è stato consegnato entro le prime 12 ore dal suo invio.",
                "Il messaggio potrebbe ancora essere consegnato; se la consegna non sarà confermata",
                "entro le successive 12 ore riceverà un ulteriore avviso.", f"Errore: {d.errore_esteso}."]
    if kind is Kind.MANCATA_CONSEGNA_24H:
        return [f'e destinato all\'utente "{rcpt}"',
                "non è stato consegnato entro le 24 ore dal suo invio.",
                "La transazione si considera conclusa con esito negativo.", f"Errore: {d.errore_esteso}."]
    raise ValueError(f"no text for {kind}")


_SINGLE_RECIPIENT = {
    Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA, Kind.MANCATA_CONSEGNA,
    Kind.RILEVAZIONE_VIRUS, Kind.MANCATA_CONSEGNA_VIRUS, Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H,
}


def notice_text(kind: Kind, t: Transaction, instant: datetime, d: NoticeDetails) -> list[str]:
    lines = [HEADING[kind], "", f"{_when(instant)} il messaggio", f'"{t.oggetto}" proveniente da "{t.mittente}"']
    if kind not in _SINGLE_RECIPIENT:
        lines.append("ed indirizzato a:")
        for r in t.destinatari:
            if kind is Kind.ACCETTAZIONE:
                label = LABEL_CERTIFICATA if r.tipo == DESTINATARIO_CERTIFICATO else LABEL_ORDINARIA
                lines.append(f'{r.address} ("{label}")')
            else:
                lines.append(r.address)
    lines.extend(_statement(kind, t, d))
    lines.append(f"Identificativo messaggio: {t.identificativo}")
    return lines


def text_alternative(lines: list[str]) -> bytes:
    plain = "\r\n".join(lines) + "\r\n"
    body = "<br>\r\n".join(html.escape(line) for line in lines)
    page = f'<html><head><meta charset="{TEXT_CHARSET}"></head><body><p>\r\n{body}\r\n</p></body></html>\r\n'
    return multipart("alternative", [text_part(plain, "plain", TEXT_CHARSET), text_part(page, "html", TEXT_CHARSET)])


# ---------------------------------------------------------------------------------------------
# Header helpers


def _unfold(value) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def on_behalf_from(sender: str, service_address: str, prefix: str = PER_CONTO_DI) -> str:
    """`"Per conto di: <sender>" <service address>`: the display name as a quoted-string (FMT-22)."""
    return f"{_quoted(prefix + sender)} <{service_address}>"


def date_header(instant: datetime) -> str:
    return format_datetime(dc.legal_time(instant).replace(microsecond=0))


def subject_for(kind: Kind, subject: str) -> str:
    return encode_header_value(SUBJECT_PREFIX[kind] + subject)


# ---------------------------------------------------------------------------------------------
# Original message handling


def rewrite_original(raw: bytes, identificativo: str, client_msgid: str | None) -> bytes:
    """The original as carried in postacert.eml: Message-ID replaced by the PEC identifier and the client
    identifier kept in X-Riferimento-Message-ID (ACC-16); body and every other byte untouched."""
    header_block, body = split_entity(raw)
    nl = b"\r\n" if b"\r\n" in header_block else b"\n"
    lines = re.split(rb"(?<=\n)", header_block)
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line.strip() == b"":
            continue
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(b"message-id:")
        if not skipping:
            kept.append(line)
    new = [f"Message-ID: <{identificativo}>".encode() + nl]
    if client_msgid:
        new.append(f"{H_RIFERIMENTO}: {client_msgid}".encode() + nl)
    return b"".join(new) + b"".join(kept) + nl + body


def _is_smime_opaque(node) -> bool:
    return node.content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime")


#: Ways a brief receipt's original can be made wrong, one step of the hashing each (the reference
#: provider's brief-receipt faults, CON-12..16): keep the named parts, keep an attached message, hash the
#: S/MIME signature part, hash an opaque S/MIME body, re-encode an unnamed text part.
BRIEF_DEVIATIONS = ("keep-named", "keep-message", "hash-signature", "hash-opaque", "recode-unnamed")


def brief_original(raw: bytes, *, deviation: str | None = None) -> bytes:
    """The original of a brief receipt (CON-12..16, decisions D8 and D29): every named part and every
    attached message replaced by a text/plain `.hash` part holding the SHA-1 (40 hex) of its body as
    transferred; structure, unnamed parts and S/MIME signature parts kept byte for byte.
    ``deviation`` (one of BRIEF_DEVIATIONS) gets one step wrong on purpose."""
    if deviation is not None and deviation not in BRIEF_DEVIATIONS:
        raise ValueError(f"unknown brief-receipt deviation {deviation!r}")
    root = walk_entity(raw)
    if _is_smime_opaque(root) and deviation != "hash-opaque":
        return raw
    return _brief(root, deviation)


def _hash_part(name: str, body: bytes) -> bytes:
    digest = hashlib.sha1(body).hexdigest()
    hashed = name + HASH_SUFFIX
    return (
        f'Content-Type: text/plain; charset="us-ascii"; name="{hashed}"\r\n'
        f"Content-Transfer-Encoding: 7bit\r\n"
        f'Content-Disposition: attachment; filename="{hashed}"\r\n\r\n{digest}\r\n'
    ).encode()


def _brief(node, deviation: str | None) -> bytes:
    if node.maintype == "multipart":
        boundary = node.headers.get_boundary()
        header_block, body = split_entity(node.raw)
        spans, _ = split_multipart(body, boundary)
        out = bytearray(header_block)
        prev = 0
        for i, ((s, e), child) in enumerate(zip(spans, node.children, strict=False)):
            out += body[prev:s]
            keep_signature = node.content_type == "multipart/signed" and i == 1 and deviation != "hash-signature"
            out += child.raw if keep_signature else _brief(child, deviation)
            prev = e
        out += body[prev:]
        return bytes(out)
    name = node.filename or node.name
    if node.content_type == "message/rfc822":
        return node.raw if deviation == "keep-message" else _hash_part(name or "messaggio.eml", node.body)
    if _is_smime_opaque(node):
        return _hash_part(name or "smime.p7m", node.body) if deviation == "hash-opaque" else node.raw
    if name and deviation != "keep-named":
        return _hash_part(name, node.body)
    if deviation == "recode-unnamed" and node.maintype == "text":
        return (f"Content-Type: {node.headers.get('content-type')}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                .encode() + b64_body(node.decoded()))
    return node.raw


# ---------------------------------------------------------------------------------------------
# Assembly


def _mixed(text: bytes, xml: bytes | None, original: bytes | None, *, xml_first: bool = True) -> bytes:
    parts = [text]
    att: list[bytes] = []
    if xml is not None:
        att.append(attachment_part("application/xml", DATICERT_NAME, xml))
    if original is not None:
        att.append(attachment_part("message/rfc822", POSTACERT_NAME, original, encoding=_cte_for(original)))
    parts.extend(att if xml_first else list(reversed(att)))
    return multipart("mixed", parts)


def _cte_for(data: bytes) -> str:
    return "7bit" if all(b < 128 for b in data) else "8bit"


def daticert_for(kind: Kind, g: Gestore, t: Transaction, instant: datetime, d: NoticeDetails) -> dc.DatiCert:
    zona, giorno, ora = dc.data_fields(instant)
    ricevuta = d.ricevuta
    if ricevuta is None and kind is Kind.BUSTA_TRASPORTO:
        ricevuta = t.ricevuta
    if ricevuta is None and kind in CONSEGNA_VARIANT:
        ricevuta = CONSEGNA_VARIANT[kind]
    return dc.DatiCert(
        tipo=DATICERT_TIPO_OF[kind],
        errore=d.errore,
        mittente=t.mittente,
        destinatari=list(t.destinatari),
        risposte=t.risposte,
        oggetto=t.oggetto,
        gestore_emittente=g.name,
        zona=zona,
        giorno=giorno,
        ora=ora,
        identificativo=t.identificativo,
        msgid=t.msgid,
        ricevuta=ricevuta,
        consegna=d.consegna,
        ricezione=list(d.ricezione),
        errore_esteso=d.errore_esteso,
    )


def _sign(g: Gestore, fields: list[tuple[str, str]], inner: bytes, instant: datetime) -> bytes:
    return sign_entity(fields, inner, g.key, g.certificate, digest=g.digest, protocol=g.protocol,
                       signing_time=instant)


def build_notice(kind: Kind, g: Gestore, t: Transaction, instant: datetime, *, to: str,
                 details: NoticeDetails | None = None, original: bytes | None = None,
                 message_id: str | None = None) -> bytes:
    """Any receipt or notice (every kind but the two envelopes)."""
    d = details or NoticeDetails()
    fields: list[tuple[str, str]] = [
        ("Date", date_header(instant)),
        ("From", g.service_address),
        ("To", to),
        ("Subject", subject_for(kind, t.oggetto)),
        ("Message-ID", message_id or g.new_notice_id(instant)),
        (H_RICEVUTA, RICEVUTA_OF[kind]),
    ]
    if t.msgid:
        fields.append((H_RIFERIMENTO, t.msgid))
    if kind in VIRUS_FLAG_KINDS:
        fields.append((H_VERIFICA_SICUREZZA, VERIFICA_SICUREZZA_ERRORE))
    if kind is Kind.RILEVAZIONE_VIRUS:
        fields.append((H_MITTENTE, t.mittente))
    xml = g.render_daticert(kind, daticert_for(kind, g, t, instant, d))
    inner = _mixed(text_alternative(notice_text(kind, t, instant, d)), xml, original)
    return _sign(g, fields, inner, instant)


def build_busta_trasporto(g: Gestore, o: Original, t: Transaction, instant: datetime) -> bytes:
    """The transport envelope (ENV-01..16): inherited fields, PEC fields, text, daticert, postacert.eml."""
    h = o.headers
    fields: list[tuple[str, str]] = [(n, _unfold(v)) for n, v in h.items()
                                     if n.lower() in ("received", "return-path")]
    fields += [
        ("Date", date_header(instant)),
        ("From", on_behalf_from(o.sender, g.service_address)),
        ("Subject", subject_for(Kind.BUSTA_TRASPORTO, o.subject)),
    ]
    fields += [(n, _unfold(v)) for n, v in h.items() if n.lower() in ("to", "cc")]
    fields += [
        ("Reply-To", o.reply_to or o.sender),
        ("Message-ID", f"<{t.identificativo}>"),
        (H_TRASPORTO, TRASPORTO_POSTA_CERTIFICATA),
        (H_TIPO_RICEVUTA, t.ricevuta),
    ]
    if t.msgid:
        fields.append((H_RIFERIMENTO, t.msgid))
    d = NoticeDetails()
    xml = g.render_daticert(Kind.BUSTA_TRASPORTO, daticert_for(Kind.BUSTA_TRASPORTO, g, t, instant, d))
    carried = rewrite_original(o.raw, t.identificativo, t.msgid)
    inner = _mixed(text_alternative(notice_text(Kind.BUSTA_TRASPORTO, t, instant, d)), xml, carried)
    return _sign(g, fields, inner, instant)


def build_accettazione(g: Gestore, t: Transaction, instant: datetime) -> bytes:
    return build_notice(Kind.ACCETTAZIONE, g, t, instant, to=t.mittente)


def build_non_accettazione(g: Gestore, t: Transaction, instant: datetime, reason: str) -> bytes:
    d = NoticeDetails(errore=ERRORE_ALTRO, errore_esteso=reason, reason=reason)
    return build_notice(Kind.NON_ACCETTAZIONE, g, t, instant, to=t.mittente, details=d)


def build_non_accettazione_virus(g: Gestore, t: Transaction, instant: datetime, virus: str) -> bytes:
    reason = f"virus rilevato: {virus}"
    d = NoticeDetails(errore=ERRORE_VIRUS, errore_esteso=reason, reason=reason)
    return build_notice(Kind.NON_ACCETTAZIONE_VIRUS, g, t, instant, to=t.mittente, details=d)


def build_presa_in_carico(g: Gestore, t: Transaction, instant: datetime, *, receipt_mailbox: str,
                          ricezione: list[str]) -> bytes:
    d = NoticeDetails(ricezione=list(ricezione))
    return build_notice(Kind.PRESA_IN_CARICO, g, t, instant, to=receipt_mailbox, details=d)


def build_avvenuta_consegna(g: Gestore, t: Transaction, instant: datetime, *, recipient: str, variant: str,
                            carried_original: bytes | None = None, ricevuta: str | None = None) -> bytes:
    """Delivery receipt: completa carries the original as in the envelope, breve its hashed form, sintetica
    none (CON-08..17). `ricevuta` overrides ricevuta/@tipo (a Cc recipient's sintetica may say completa, D5)."""
    kind = {v: k for k, v in CONSEGNA_VARIANT.items()}[variant]
    original = None
    if kind is Kind.CONSEGNA_COMPLETA:
        original = carried_original
    elif kind is Kind.CONSEGNA_BREVE and carried_original is not None:
        original = brief_original(carried_original)
    d = NoticeDetails(consegna=recipient, ricevuta=ricevuta or variant)
    return build_notice(kind, g, t, instant, to=t.mittente, details=d, original=original)


def error_string(code: str, g: Gestore, description: str) -> str:
    """`<x.y.z> - <gestore> - <descrizione>` (decision D18, NOT-01)."""
    return f"{code} - {g.name} - {description}"


def build_mancata_consegna(g: Gestore, t: Transaction, instant: datetime, *, recipient: str, errore: str,
                           errore_esteso: str) -> bytes:
    d = NoticeDetails(consegna=recipient, errore=errore, errore_esteso=errore_esteso)
    return build_notice(Kind.MANCATA_CONSEGNA, g, t, instant, to=t.mittente, details=d)


def build_rilevazione_virus(g: Gestore, t: Transaction, instant: datetime, *, recipient: str,
                            receipt_mailbox: str, virus: str) -> bytes:
    reason = f"virus rilevato: {virus}"
    d = NoticeDetails(consegna=recipient, errore=ERRORE_VIRUS, errore_esteso=reason, reason=reason)
    return build_notice(Kind.RILEVAZIONE_VIRUS, g, t, instant, to=receipt_mailbox, details=d)


def build_mancata_consegna_virus(g: Gestore, t: Transaction, instant: datetime, *, recipient: str, virus: str,
                                 code: str) -> bytes:
    reason = f"virus rilevato: {virus}"
    d = NoticeDetails(consegna=recipient, errore=ERRORE_VIRUS, reason=reason,
                      errore_esteso=error_string(code, g, "presenza di un virus nel messaggio"))
    return build_notice(Kind.MANCATA_CONSEGNA_VIRUS, g, t, instant, to=t.mittente, details=d)


def build_timeout(kind: Kind, g: Gestore, t: Transaction, instant: datetime, *, recipient: str,
                  code: str) -> bytes:
    if kind not in (Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H):
        raise ValueError(f"{kind} is not a timeout notice")
    hours = "dodici" if kind is Kind.PREAVVISO_12H else "ventiquattro"
    desc = f"il messaggio non è stato consegnato nelle {hours} ore successive al suo invio"
    d = NoticeDetails(consegna=recipient, errore=ERRORE_ALTRO, errore_esteso=error_string(code, g, desc))
    return build_notice(kind, g, t, instant, to=t.mittente, details=d)


def build_busta_anomalia(g: Gestore, received: bytes, instant: datetime, *, reverse_path: str | None,
                         error: str) -> bytes:
    """The anomaly envelope (ANO-02..12): inherited fields including Message-ID, text and the whole received
    message, nothing else; `Reply-To` inserted only when the message had none."""
    o = read_original(received, reverse_path)
    h = o.headers
    inherit = ("received", "return-path", "to", "cc", "message-id", "reply-to")
    fields: list[tuple[str, str]] = [(n, _unfold(v)) for n, v in h.items() if n.lower() in inherit]
    sender = _address(h.get("from")) or (reverse_path or "")
    fields += [
        ("Date", date_header(instant)),
        ("From", on_behalf_from(sender, g.service_address)),
        ("Subject", subject_for(Kind.BUSTA_ANOMALIA, o.subject)),
        (H_TRASPORTO, TRASPORTO_ERRORE),
    ]
    if not h.get("reply-to"):
        fields.append(("Reply-To", sender))
    lines = [HEADING[Kind.BUSTA_ANOMALIA], "", f"{_when(instant)} è stato ricevuto",
             f'il messaggio "{o.subject}" proveniente da "{sender}"', "ed indirizzato a:", *o.recipients,
             "Tali dati non sono stati certificati per il seguente errore:", error,
             "Il messaggio originale è incluso in allegato."]
    inner = _mixed(text_alternative(lines), None, received)
    return _sign(g, fields, inner, instant)


def with_crlf_body(raw: bytes) -> bytes:
    """Helper for callers that hold LF-only originals: header and body with CRLF line ends."""
    return raw if b"\r\n" in raw else raw.replace(b"\n", CRLF)

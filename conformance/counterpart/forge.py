"""What the counterpart sends to the target: correct envelopes, ordinary mail, forgeries, and the
notices a recipient provider answers with. Pure functions over bytes, built with the PEC builders.

Every forgery changes one property of a correct envelope and nothing else:

- `unsigned`: the S/MIME layer removed (existence test, RIC-03);
- `bad_signature`: the signature value corrupted, the signed content intact (validity, RIC-06);
- `tampered`: one byte of the signed content changed after signing (validity, RIC-06);
- `signed_by`: signed again by another key: a signer not in the index (origin, RIC-05), an expired,
  not-yet-valid or revoked certificate (validity, RIC-06/07), see `pki.write_forgery_material`;
- `with_eicar`: a correct envelope whose original carries the EICAR test file (VIR-05..08);
- `sha1_envelope`: a correct envelope signed with SHA-1, which a target must still accept (D16).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from asn1crypto import cms as asn1_cms

from ..pec import build as b
from ..pec.build import Gestore, Transaction
from ..pec.constants import (
    CODE_UNKNOWN_MAILBOX,
    ERRORE_NO_DEST,
    H_TIPO_RICEVUTA,
    TIPO_COMPLETA,
)
from ..pec.mime import (
    CRLF,
    attachment_part,
    b64_body,
    encode_header_value,
    entity,
    header_lines,
    multipart,
    split_entity,
    text_part,
    walk_entity,
)
from ..pec.parse import ParsedMessage, parse_message
from ..pec.pki import ProviderCredentials
from ..pec.samples import EICAR
from ..pec.smime import resign, split_signed, unsign

EICAR_NAME = "Eicar-Test-Signature"
DEFAULT_SUBJECT = "Prova PEC dalla controparte"

__all__ = [
    "EICAR",
    "EICAR_NAME",
    "add_attachment",
    "bad_signature",
    "consegna",
    "envelope",
    "gestore",
    "mancata_consegna",
    "ordinary",
    "original",
    "presa_in_carico",
    "requested_variant",
    "rilevazione_virus",
    "sha1_envelope",
    "signed_by",
    "tampered",
    "unsigned",
    "variant_for",
    "with_eicar",
]


def gestore(creds: ProviderCredentials, digest: str = "sha256") -> Gestore:
    """The issuing provider for the builders, from the counterpart's credentials."""
    return Gestore(name=creds.provider_name, domain=creds.domains[0], key=creds.key, certificate=creds.certificate,
                   service_address=creds.service_address, digest=digest)


def _now(instant: datetime | None) -> datetime:
    return (instant or datetime.now(UTC)).replace(microsecond=0)


def _list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------
# Originals and correct envelopes


def original(sender: str, to: str | list[str], *, cc: str | list[str] = (), subject: str = DEFAULT_SUBJECT,
             tipo_ricevuta: str | None = TIPO_COMPLETA, client_msgid: str | None = "",
             reply_to: str | None = None, attachment: bytes | None = b"%PDF-1.4 documento di prova\n" * 20,
             attachment_name: str = "documento.pdf", attachment_type: str = "application/pdf",
             text: str = "Buongiorno,\r\nin allegato il documento.\r\n", display_name: str | None = None) -> bytes:
    """A user's message as its access point would receive it (the shape of `samples.sample_original`).
    `client_msgid` "" draws a fresh Message-ID; None leaves it out."""
    if client_msgid == "":
        client_msgid = f"<{secrets.token_hex(8)}@{sender.rpartition('@')[2] or 'client.test'}>"
    from_value = f"{display_name} <{sender}>" if display_name else sender
    fields = [
        ("Date", b.date_header(datetime.now(UTC))),
        ("From", from_value),
        ("To", ", ".join(_list(to))),
    ]
    if cc:
        fields.append(("Cc", ", ".join(_list(cc))))
    fields.append(("Subject", encode_header_value(subject)))
    if client_msgid:
        fields.append(("Message-ID", client_msgid))
    if reply_to:
        fields.append(("Reply-To", reply_to))
    if tipo_ricevuta:
        fields.append((H_TIPO_RICEVUTA, tipo_ricevuta))
    fields.append(("MIME-Version", "1.0"))
    parts = [text_part(text, "plain", "iso-8859-1")]
    if attachment is not None:
        parts.append(attachment_part(attachment_type, attachment_name, attachment, disposition="attachment"))
    return multipart("mixed", parts, extra_fields=fields)


_make_original = original  # `original` is also a parameter name below


def envelope(creds: ProviderCredentials, original: bytes, *, identificativo: str | None = None,
             digest: str = "sha256", is_pec_domain=None, instant: datetime | None = None,
             reverse_path: str | None = None) -> tuple[bytes, Transaction]:
    """A correct transport envelope, as the counterpart's access point would make it for one of its
    users: send it with MAIL FROM `transaction.mittente` and RCPT TO the target's recipients."""
    g = gestore(creds, digest)
    when = _now(instant)
    o = b.read_original(original, reverse_path)
    ident = identificativo or g.new_msgid(when)
    t = Transaction.from_original(o, ident, is_pec_domain)
    return b.build_busta_trasporto(g, o, t, when), t


def sha1_envelope(creds: ProviderCredentials, original: bytes, **kwargs) -> tuple[bytes, Transaction]:
    """A correct envelope signed with SHA-1 (legacy, still to be accepted by an incoming point, D16)."""
    kwargs["digest"] = "sha1"
    return envelope(creds, original, **kwargs)


def add_attachment(raw: bytes, content_type: str, name: str, data: bytes) -> bytes:
    """The message with one more attached file: appended to a multipart/mixed body, or the body wrapped
    in a new multipart/mixed together with the file."""
    root = walk_entity(raw)
    part = attachment_part(content_type, name, data, disposition="attachment")
    head, body = split_entity(raw)
    if root.content_type == "multipart/mixed" and root.headers.get_boundary():
        closing = b"--" + root.headers.get_boundary().encode() + b"--"
        at = body.rfind(closing)
        if at >= 0:
            return head + body[:at] + closing[:-2] + CRLF + part + body[at:]
    # Move the Content-* fields to the first part of a new multipart/mixed.
    fields = header_lines(head)
    content = [f for f in fields if f.lower().startswith(b"content-")]
    outer = [f for f in fields if not f.lower().startswith((b"content-", b"mime-version:"))]
    first = b"".join(content) + CRLF + body
    boundary = f"----=_mix_{secrets.token_hex(12)}"
    new_body = (b"--" + boundary.encode() + CRLF + first + (b"" if first.endswith(CRLF) else CRLF)
                + b"--" + boundary.encode() + CRLF + part + b"--" + boundary.encode() + b"--" + CRLF)
    return (b"".join(outer) + b"MIME-Version: 1.0" + CRLF
            + f'Content-Type: multipart/mixed; boundary="{boundary}"'.encode() + CRLF + CRLF + new_body)


def with_eicar(creds: ProviderCredentials, original: bytes | None = None, *, sender: str | None = None,
               to: str | list[str] = (), cc: str | list[str] = (), subject: str = "Prova virus dalla controparte",
               **envelope_kwargs) -> tuple[bytes, Transaction]:
    """A correct envelope whose original carries the EICAR test string as an attachment. Give an
    original (the file is added to it) or a sender and recipients (an original is made)."""
    if original is None:
        if not sender or not to:
            raise ValueError("with_eicar needs an original, or a sender and recipients")
        original_bytes = _make_original(sender, to, cc=cc, subject=subject, attachment=EICAR,
                                               attachment_name="eicar.com",
                                               attachment_type="application/octet-stream")
    else:
        original_bytes = add_attachment(original, "application/octet-stream", "eicar.com", EICAR)
    return envelope(creds, original_bytes, **envelope_kwargs)


def ordinary(sender: str, to: str | list[str], subject: str, *, text: str = "Messaggio di posta ordinaria.\r\n",
             message_id: str | None = None, cc: str | list[str] = ()) -> bytes:
    """Plain RFC 5322 mail, no signature, no PEC header."""
    domain = sender.rpartition("@")[2] or "example.org"
    fields = [
        ("Date", b.date_header(datetime.now(UTC))),
        ("From", sender),
        ("To", ", ".join(_list(to))),
    ]
    if cc:
        fields.append(("Cc", ", ".join(_list(cc))))
    fields += [
        ("Subject", encode_header_value(subject)),
        ("Message-ID", message_id or f"<{secrets.token_hex(8)}@{domain}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    return entity(fields, re.sub(rb"\r?\n", CRLF, text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------
# Forgeries of a signed message


def _signed(raw: bytes):
    signed = split_signed(walk_entity(raw))
    if signed is None:
        raise ValueError("not a multipart/signed message")
    return signed


def unsigned(envelope_bytes: bytes) -> bytes:
    """The same message without its S/MIME layer: the outer fields and the signed multipart/mixed body."""
    return unsign(envelope_bytes)


def signed_by(envelope_bytes: bytes, key, cert, digest: str = "sha256", *,
              signing_time: datetime | None = None) -> bytes:
    """The same outer fields and signed content, signed again by another key and certificate."""
    return resign(envelope_bytes, lambda content: content, key, cert, digest, signing_time=signing_time)


def bad_signature(envelope_bytes: bytes) -> bytes:
    """The signature value corrupted (one bit), everything else byte for byte: the content digest still
    matches, the signature over the signed attributes does not verify."""
    signed = _signed(envelope_bytes)
    if signed.signature_der is None or signed.signature_node is None:
        raise ValueError("no signature to corrupt")
    der = signed.signature_der
    info = asn1_cms.ContentInfo.load(der)
    value = info["content"]["signer_infos"][0]["signature"].native
    at = der.rfind(value)
    if at < 0:
        raise ValueError("signature value not found in the CMS structure")
    corrupted = bytearray(der)
    corrupted[at + len(value) // 2] ^= 0x01
    node = signed.signature_node
    sig_head = node.raw[: len(node.raw) - len(node.body)]
    new_part = sig_head + b64_body(bytes(corrupted))
    old_part = node.raw
    start = envelope_bytes.rfind(old_part)
    if start < 0:
        raise ValueError("signature part not found in the message")
    # Keep the line end that belongs to the closing delimiter (b64_body ends with CRLF; the part did not).
    if not old_part.endswith(CRLF) and new_part.endswith(CRLF):
        new_part = new_part[:-2]
    return envelope_bytes[:start] + new_part + envelope_bytes[start + len(old_part):]


def tampered(envelope_bytes: bytes) -> bytes:
    """One byte of the signed content changed after signing (the case of a letter of the human-readable
    text swapped), the signature untouched."""
    signed = _signed(envelope_bytes)
    start = envelope_bytes.find(signed.content)
    leaf = next((n for n in signed.content_node.leaves() if n.maintype == "text"), None)
    if start < 0 or leaf is None:
        raise ValueError("no signed text to tamper with")
    offset = signed.content.find(leaf.raw) + len(leaf.raw) - len(leaf.body)
    match = re.search(rb"[A-Za-z]", leaf.body)
    if match is None:
        raise ValueError("no letter in the signed text")
    pos = start + offset + match.start()
    out = bytearray(envelope_bytes)
    out[pos] ^= 0x20  # swap the letter's case
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Notices the counterpart answers with, as the recipients' provider


def _parsed(envelope_parsed: ParsedMessage | bytes) -> ParsedMessage:
    msg = envelope_parsed if isinstance(envelope_parsed, ParsedMessage) else parse_message(envelope_parsed)
    if msg.daticert is None:
        raise ValueError("the envelope has no readable daticert.xml")
    return msg


requested_variant = b.requested_variant
variant_for = b.variant_for


def presa_in_carico(creds: ProviderCredentials, envelope_parsed: ParsedMessage | bytes, receipt_mailbox: str,
                    ricezione: list[str], *, instant: datetime | None = None, digest: str = "sha256") -> bytes:
    msg = _parsed(envelope_parsed)
    t = Transaction.from_daticert(msg.daticert)
    return b.build_presa_in_carico(gestore(creds, digest), t, _now(instant), receipt_mailbox=receipt_mailbox,
                                   ricezione=list(ricezione))


def consegna(creds: ProviderCredentials, envelope_parsed: ParsedMessage | bytes, recipient: str,
             variant: str | None = None, *, instant: datetime | None = None, digest: str = "sha256",
             ricevuta: str | None = None) -> bytes:
    """Avvenuta consegna for one recipient, addressed to the original sender; `variant` None picks it
    from the envelope (`variant_for`). Completa carries the envelope's postacert.eml, breve its hashed form."""
    msg = _parsed(envelope_parsed)
    t = Transaction.from_daticert(msg.daticert)
    variant = variant or variant_for(msg, recipient)
    return b.build_avvenuta_consegna(gestore(creds, digest), t, _now(instant), recipient=recipient,
                                     variant=variant, carried_original=msg.postacert, ricevuta=ricevuta)


def mancata_consegna(creds: ProviderCredentials, envelope_parsed: ParsedMessage | bytes, recipient: str, *,
                     errore: str = ERRORE_NO_DEST, code: str = CODE_UNKNOWN_MAILBOX,
                     description: str = "indirizzo non valido", instant: datetime | None = None,
                     digest: str = "sha256") -> bytes:
    """Avviso di mancata consegna for one recipient (errore-esteso `<code> - <provider> - <description>`, D18)."""
    msg = _parsed(envelope_parsed)
    g = gestore(creds, digest)
    t = Transaction.from_daticert(msg.daticert)
    return b.build_mancata_consegna(g, t, _now(instant), recipient=recipient, errore=errore,
                                    errore_esteso=b.error_string(code, g, description))


def rilevazione_virus(creds: ProviderCredentials, envelope_parsed: ParsedMessage | bytes, recipient: str,
                      receipt_mailbox: str, *, virus: str = EICAR_NAME, instant: datetime | None = None,
                      digest: str = "sha256") -> bytes:
    """Avviso di rilevazione virus for one recipient, to the sending provider's mailReceipt."""
    msg = _parsed(envelope_parsed)
    t = Transaction.from_daticert(msg.daticert)
    return b.build_rilevazione_virus(gestore(creds, digest), t, _now(instant), recipient=recipient,
                                     receipt_mailbox=receipt_mailbox, virus=virus)

"""The fault catalogue: one named switch per deviation of the reference provider.

Each fault says which requirements it breaks and whether the suite should report it as a FAIL or,
for a SHOULD or a decision that warns, a WARN. A fault either alters a message the provider emits
(its daticert through a builder hook, or the finished bytes) or changes a flow (a notice not sent,
sent twice, sent to the wrong party); the provider's code asks `faults.on(name)` at that point.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from ..pec import daticert as dc
from ..pec.build import Gestore
from ..pec.constants import (
    DESTINATARIO_CERTIFICATO,
    H_RICEVUTA,
    H_RIFERIMENTO,
    H_TIPO_RICEVUTA,
    H_TRASPORTO,
    H_VERIFICA_SICUREZZA,
    Kind,
)
from ..pec.mime import CRLF, MimeNode, header_lines, split_entity, text_part, walk_entity
from ..pec.smime import resign, unsign

# ---------------------------------------------------------------------------------------------
# Byte-level helpers (outer header fields are outside the signature)


def edit_outer(raw: bytes, fn: Callable[[list[bytes]], list[bytes]]) -> bytes:
    head, body = split_entity(raw)
    return b"".join(fn(header_lines(head))) + CRLF + body


def drop_header(raw: bytes, name: str) -> bytes:
    low = name.lower().encode() + b":"
    return edit_outer(raw, lambda fs: [f for f in fs if not f.lower().startswith(low)])


def set_header(raw: bytes, name: str, value: str) -> bytes:
    low = name.lower().encode() + b":"
    new = f"{name}: {value}".encode() + CRLF

    def fn(fields: list[bytes]) -> list[bytes]:
        out = [new if f.lower().startswith(low) else f for f in fields]
        return out if new in out else [new, *out]

    return edit_outer(raw, fn)


def get_header(raw: bytes, name: str) -> str | None:
    value = walk_entity(raw).headers.get(name)
    return None if value is None else re.sub(r"\r?\n[ \t]", " ", str(value)).strip()


def _drop_mime_part(inner: bytes, predicate: Callable[[bytes], bool]) -> bytes:
    node = walk_entity(inner)
    head, body = split_entity(inner)
    out = bytearray(head)
    boundary = node.headers.get_boundary().encode()
    kept = [c.raw for c in node.children if not predicate(c.raw)]
    for part in kept:
        out += b"--" + boundary + CRLF + part + CRLF
    out += b"--" + boundary + b"--" + CRLF
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True)
class Fault:
    name: str
    point: str  # access | incoming | delivery | tracking
    requirements: tuple[str, ...]
    verdict: str  # what the suite should report: FAIL, or WARN for a SHOULD / a warning decision
    description: str
    kinds: tuple[Kind, ...] = ()  # the message kinds it alters; empty for a flow fault
    daticert: Callable[[dc.DatiCert], dc.DatiCert] | None = None
    message: Callable[[bytes, Gestore], bytes] | None = None
    # Scenario globs where the deviation shows, when the scenarios judging its requirements are not enough
    # (e.g. the kill matrix would otherwise pick ones that never make the altered kind).
    scenarios: tuple[str, ...] = ()

    @property
    def flow(self) -> bool:
        return self.daticert is None and self.message is None


def _prefix(old: str, new: str):
    def fn(raw: bytes, g: Gestore) -> bytes:
        subject = get_header(raw, "Subject") or ""
        return set_header(raw, "Subject", subject.replace(old, new, 1))
    return fn


def _drop(name: str):
    return lambda raw, g: drop_header(raw, name)


def _resigned(fn: Callable[[bytes], bytes], digest: str | None = None):
    return lambda raw, g: resign(raw, fn, g.key, g.certificate, digest or g.digest)


def _winter_summer(d: dc.DatiCert) -> dc.DatiCert:
    return replace(d, zona="+0200" if d.zona == "+0100" else "+0100")


def _with_original(raw: bytes, g: Gestore) -> bytes:
    from ..pec.mime import attachment_part

    stub = b"From: x@example.org\r\nSubject: originale\r\n\r\noriginale\r\n"

    def add(inner: bytes) -> bytes:
        node = walk_entity(inner)
        boundary = node.headers.get_boundary().encode()
        part = attachment_part("message/rfc822", "postacert.eml", stub, encoding="7bit")
        return inner.replace(b"--" + boundary + b"--", b"--" + boundary + CRLF + part + b"--" + boundary + b"--")
    return resign(raw, add, g.key, g.certificate, g.digest)


def _no_daticert(raw: bytes, g: Gestore) -> bytes:
    return resign(raw, lambda inner: _drop_mime_part(inner, lambda p: b"daticert.xml" in p[:600]),
                  g.key, g.certificate, g.digest)


def _no_original(raw: bytes, g: Gestore) -> bytes:
    return resign(raw, lambda inner: _drop_mime_part(inner, lambda p: b"postacert.eml" in p[:600]),
                  g.key, g.certificate, g.digest)


def _anomaly_with_daticert(raw: bytes, g: Gestore) -> bytes:
    from ..pec.mime import attachment_part

    xml = (b'<?xml version="1.0" encoding="UTF-8"?><postacert tipo="posta-certificata" errore="nessuno">'
           b"</postacert>")

    def add(inner: bytes) -> bytes:
        boundary = walk_entity(inner).headers.get_boundary().encode()
        part = attachment_part("application/xml", "daticert.xml", xml)
        return inner.replace(b"--" + boundary + b"--", b"--" + boundary + CRLF + part + b"--" + boundary + b"--")
    return resign(raw, add, g.key, g.certificate, g.digest)


def _author_from(raw: bytes, g: Gestore) -> bytes:
    value = get_header(raw, "From") or ""
    m = re.search(r"Per conto di: ([^\"]+)\"", value)
    return set_header(raw, "From", m.group(1).strip() if m else value)


def _unquoted_from(raw: bytes, g: Gestore) -> bytes:
    value = get_header(raw, "From") or ""
    return set_header(raw, "From", value.replace('"', ""))


def _keep_client_msgid(raw: bytes, g: Gestore) -> bytes:
    def fn(inner: bytes) -> bytes:
        return re.sub(rb"(?m)^Message-ID: <opec[^>]*>\r?\n", b"", inner, count=1).replace(
            f"{H_RIFERIMENTO}: ".encode(), b"Message-ID: ", 1)
    return resign(raw, fn, g.key, g.certificate, g.digest)


def _alter_original(raw: bytes, g: Gestore) -> bytes:
    return resign(raw, lambda inner: inner.replace(b"in allegato la fattura", b"in allegato la FATTURA", 1),
                  g.key, g.certificate, g.digest)


def _wrong_hash(raw: bytes, g: Gestore) -> bytes:
    def fn(inner: bytes) -> bytes:
        return re.sub(rb"(\r?\n\r?\n)([0-9a-f]{40})(\r?\n)",
                      lambda m: m.group(1) + m.group(2)[::-1] + m.group(3), inner, count=1)
    return resign(raw, fn, g.key, g.certificate, g.digest)


def _reply_to_user(raw: bytes, g: Gestore) -> bytes:
    return set_header(raw, "To", "someone.else@example.org")


def _wrong_certificate_note(d: dc.DatiCert) -> dc.DatiCert:
    return replace(d, destinatari=[dc.Recipient(r.address, DESTINATARIO_CERTIFICATO) for r in d.destinatari])


def _inner(fn: Callable[[bytes], bytes]):
    """A change inside the signed content, signed again with the provider's own key."""
    return lambda raw, g: resign(raw, fn, g.key, g.certificate, g.digest)


def _map_parts(entity: bytes, fn: Callable[[MimeNode], bytes | None]) -> bytes:
    """The entity with each non-multipart part passed through `fn` (None keeps it); multiparts rebuilt."""
    node = walk_entity(entity)
    if node.maintype != "multipart":
        out = fn(node)
        return entity if out is None else out
    head, _ = split_entity(entity)
    boundary = node.headers.get_boundary().encode()
    out = bytearray(head)
    for child in node.children:
        out += b"--" + boundary + CRLF + _map_parts(child.raw, fn) + CRLF
    out += b"--" + boundary + b"--" + CRLF
    return bytes(out)


def _texts(fn: Callable[[str, str], str], subtypes: tuple[str, ...] = ("plain", "html")):
    """Rewrite the human-readable text (plain and HTML) of a message, kept in ISO-8859-1 quoted-printable."""
    def leaf(node: MimeNode) -> bytes | None:
        sub = node.content_type.partition("/")[2]
        if node.maintype != "text" or sub not in subtypes:
            return None
        return text_part(fn(node.text(), sub), sub, node.charset or "iso-8859-1")
    return _inner(lambda inner: _map_parts(inner, leaf))


def _recode_text(charset: str | None = None, encoding: str | None = None):
    """The text parts in another charset or transfer encoding, their words unchanged."""
    def leaf(node: MimeNode) -> bytes | None:
        if node.maintype != "text":
            return None
        cs = charset or node.charset or "iso-8859-1"
        sub = node.content_type.partition("/")[2]
        if encoding is None:
            return text_part(node.text(), sub, cs)
        body = node.text().encode(cs)
        return (f'Content-Type: text/{sub}; charset="{cs}"\r\nContent-Transfer-Encoding: {encoding}\r\n'
                f"Content-Disposition: inline\r\n\r\n").encode() + body.replace(b"\r\n", b"\n").replace(b"\n", CRLF)
    return _inner(lambda inner: _map_parts(inner, leaf))


def _plain_only(inner: bytes) -> bytes:
    """multipart/alternative text reduced to its text/plain part."""
    def fix(entity: bytes) -> bytes:
        node = walk_entity(entity)
        if node.content_type == "multipart/alternative":
            return node.children[0].raw
        if node.maintype != "multipart":
            return entity
        head, _ = split_entity(entity)
        boundary = node.headers.get_boundary().encode()
        out = bytearray(head)
        for child in node.children:
            out += b"--" + boundary + CRLF + fix(child.raw) + CRLF
        return bytes(out + b"--" + boundary + b"--" + CRLF)
    return fix(inner)


def _no_text(inner: bytes) -> bytes:
    return _drop_mime_part(inner, lambda p: p.lower().startswith(b"content-type: multipart/alternative")
                           or p.lower().startswith(b"content-type: text/"))


def _xml_first(inner: bytes) -> bytes:
    """The parts of multipart/mixed in reverse order: the XML (or original) before the text."""
    node = walk_entity(inner)
    head, _ = split_entity(inner)
    boundary = node.headers.get_boundary().encode()
    out = bytearray(head)
    for child in reversed(node.children):
        out += b"--" + boundary + CRLF + child.raw + CRLF
    return bytes(out + b"--" + boundary + b"--" + CRLF)


def _shift_date(seconds: int):
    def fn(raw: bytes, g: Gestore) -> bytes:
        when = parsedate_to_datetime(get_header(raw, "Date") or "")
        return set_header(raw, "Date", format_datetime(when + timedelta(seconds=seconds)))
    return fn


def _rename_original(inner: bytes) -> bytes:
    return inner.replace(b'name="postacert.eml"', b'name="messaggio.eml"')


def _text_subject_changed(text: str, sub: str) -> str:
    return re.sub(r'(il messaggio(?:<br>)?\s*(?:"|&quot;))(.*?)("|&quot;)', r"\1Altro oggetto\3", text, count=1)


def _text_english(text: str, sub: str) -> str:
    return text.replace("Il giorno", "On", 1).replace("alle ore", "at", 1).replace(
        "Identificativo messaggio", "Message identifier", 1)


def _text_iso_date(text: str, sub: str) -> str:
    return re.sub(r"(\d{2})/(\d{2})/(\d{4})", r"\3-\2-\1", text, count=1)


def _text_without(prefix: str):
    def fn(text: str, sub: str) -> str:
        return re.sub(rf"(?m)^{re.escape(prefix)}[^\r\n]*(\r?\n)?", "", text)
    return fn


def _remote_image(text: str, sub: str) -> str:
    return text.replace("<body>", '<body><img src="http://logo.pec.riferimento.test/logo.png">', 1)


def _utc(d: dc.DatiCert) -> dc.DatiCert:
    instant = d.instant
    if instant is None:
        return d
    utc = instant.astimezone(UTC)
    return replace(d, zona="+0000", giorno=utc.strftime("%d/%m/%Y"), ora=utc.strftime("%H:%M:%S"))


def _slow_clock(seconds: int):
    """daticert and Date of a message from a clock `seconds` behind (the two still agree with each other)."""
    def data(d: dc.DatiCert) -> dc.DatiCert:
        instant = d.instant
        if instant is None:
            return d
        moved = dc.legal_time(instant - timedelta(seconds=seconds))
        return replace(d, giorno=moved.strftime("%d/%m/%Y"), ora=moved.strftime("%H:%M:%S"),
                       zona=moved.strftime("%z"))
    return data


def _slow_clock_message(seconds: int):
    """Date and the time in the text from the same slow clock as `_slow_clock`'s daticert."""
    def earlier(match: re.Match) -> str:
        moved = datetime.strptime(match.group(0), "%d/%m/%Y alle ore %H:%M:%S") - timedelta(seconds=seconds)
        return moved.strftime("%d/%m/%Y alle ore %H:%M:%S")

    text = _texts(lambda t, sub: re.sub(r"\d{2}/\d{2}/\d{4} alle ore \d{2}:\d{2}:\d{2}", earlier, t))
    return lambda raw, g: text(_shift_date(-seconds)(raw, g), g)


def _relayed_outside(raw: bytes, g: Gestore) -> bytes:
    hop = ("from smtp.pec.riferimento.test by mx.relay-esterno.example (Postfix) with ESMTPS; "
           + (get_header(raw, "Date") or ""))
    return edit_outer(raw, lambda fs: [f"Received: {hop}".encode() + CRLF, *fs])


# Certificate faults: the provider signs with a certificate of the test CA that breaks one point of the
# RFC 6109 section 5.5 profile (built at start-up from the CA key beside the CA certificate; as it is not
# the certificate published in the providers index, the index checks also fail).
CERTIFICATE_DEFECTS = {
    "sig-cert-small-key": "small-key", "sig-cert-email-in-subject": "email-in-subject",
    "sig-cert-ku-not-critical": "ku-not-critical", "sig-cert-no-aki": "no-aki", "sig-cert-no-ski": "no-ski",
    "sig-cert-san-critical": "san-critical", "sig-cert-basic-constraints": "basic-constraints",
    "sig-cert-critical-policy": "critical-policy",
}


def defective_certificate(defect: str, ca_certificate, ca_key, key, provider_name: str, service_address: str):
    """(key, certificate) for `provider_name` with one profile defect."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from ..pec.pki import TEST_POLICY_OID, _end_entity_key_usage

    if defect == "small-key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    names = [x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, provider_name),
             x509.NameAttribute(NameOID.COMMON_NAME, "Posta Certificata")]
    if defect == "email-in-subject":
        names.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, service_address))
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(ca_certificate.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=365))
               .add_extension(_end_entity_key_usage(), critical=defect != "ku-not-critical")
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(service_address)]),
                              critical=defect == "san-critical")
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False))
    if defect != "no-aki":
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    if defect != "no-ski":
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if defect == "basic-constraints":
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if defect == "critical-policy":
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(TEST_POLICY_OID, None)]), critical=True)
    return key, builder.sign(ca_key, hashes.SHA256())


def _cms_without_certificates(raw: bytes, g: Gestore) -> bytes:
    """The same signed message with the certificates left out of the CMS SignedData (SIG-02)."""
    import base64

    from asn1crypto import cms

    node = walk_entity(raw)
    part = node.children[1]
    info = cms.ContentInfo.load(base64.b64decode(part.body))
    info["content"]["certificates"] = None
    body = base64.encodebytes(info.dump()).replace(b"\n", CRLF)
    return raw[:part.body_start] + body + raw[part.end:]


FAULTS: tuple[Fault, ...] = (
    # ---------------------------------------------------------------- access point
    Fault("acc-no-accettazione", "access", ("ACC-12",), "FAIL", "no acceptance receipt is sent to the sender"),
    Fault("acc-subject-prefix", "access", ("FMT-18", "ACC-12"), "FAIL",
          "acceptance subject prefix in lower case", (Kind.ACCETTAZIONE,),
          message=_prefix("ACCETTAZIONE: ", "Accettazione: ")),
    Fault("acc-unsigned", "access", ("SIG-01",), "FAIL", "the acceptance receipt is not signed",
          (Kind.ACCETTAZIONE,), message=lambda raw, g: unsign(raw)),
    Fault("acc-wrong-zona", "access", ("TIM-05",), "FAIL", "acceptance daticert zona is not Italian legal time",
          (Kind.ACCETTAZIONE,), daticert=_winter_summer),
    Fault("acc-no-riferimento", "access", ("GEN-05",), "FAIL",
          "acceptance receipt without X-Riferimento-Message-ID", (Kind.ACCETTAZIONE,), message=_drop(H_RIFERIMENTO)),
    Fault("acc-all-certificato", "access", ("ACC-14", "FMT-10"), "FAIL",
          "every recipient labelled certificato in daticert, ordinary ones included", (Kind.ACCETTAZIONE,),
          daticert=_wrong_certificate_note),
    Fault("acc-to-other", "access", ("GEN-01", "ACC-12"), "FAIL",
          "the acceptance receipt is addressed to someone other than the sender", (Kind.ACCETTAZIONE,),
          message=_reply_to_user),
    Fault("acc-bcc-accepted", "access", ("ACC-08", "ACC-09", "GEN-03"), "FAIL", "a message with Bcc addresses is accepted"),
    Fault("acc-sender-mismatch-accepted", "access", ("ACC-19",), "FAIL",
          "From differing from the authenticated user is accepted"),
    Fault("acc-hidden-recipient-accepted", "access", ("ACC-07", "ACC-09"), "FAIL",
          "a RCPT TO recipient absent from To/Cc is accepted"),
    Fault("acc-virus-not-detected", "access", ("VIR-02",), "FAIL",
          "the access point forwards a message carrying a virus"),
    Fault("nacc-subject-prefix", "access", ("FMT-18", "ACC-10"), "FAIL", "non-acceptance subject prefix misspelt",
          (Kind.NON_ACCETTAZIONE,), message=_prefix("AVVISO DI NON ACCETTAZIONE: ", "AVVISO NON ACCETTAZIONE: ")),
    Fault("nacc-includes-original", "access", ("ACC-11",), "FAIL", "the non-acceptance notice carries the original",
          (Kind.NON_ACCETTAZIONE,), message=_with_original),
    Fault("naccv-no-verifica-flag", "access", ("VIR-03",), "FAIL",
          "virus non-acceptance without X-VerificaSicurezza", (Kind.NON_ACCETTAZIONE_VIRUS,),
          message=_drop(H_VERIFICA_SICUREZZA)),
    Fault("naccv-errore-altro", "access", ("FMT-09",), "FAIL", "virus non-acceptance daticert says errore=altro",
          (Kind.NON_ACCETTAZIONE_VIRUS,), daticert=lambda d: replace(d, errore="altro")),
    # ---------------------------------------------------------------- transport envelope
    Fault("env-subject-prefix", "access", ("FMT-18", "ENV-04"), "FAIL", "envelope subject without its prefix",
          (Kind.BUSTA_TRASPORTO,), message=_prefix("POSTA CERTIFICATA: ", "")),
    Fault("env-from-author", "access", ("ENV-05",), "FAIL", "envelope From is the original author",
          (Kind.BUSTA_TRASPORTO,), message=_author_from),
    Fault("env-unquoted-display-name", "access", ("FMT-22",), "FAIL",
          "envelope From display name not a quoted-string", (Kind.BUSTA_TRASPORTO,), message=_unquoted_from),
    Fault("env-no-tipo-ricevuta", "access", ("ENV-10",), "WARN",
          "envelope without X-TipoRicevuta (daticert ricevuta still present, decision D20)",
          (Kind.BUSTA_TRASPORTO,), message=_drop(H_TIPO_RICEVUTA)),
    Fault("env-client-msgid-kept", "access", ("ACC-16",), "FAIL",
          "the carried original keeps the client Message-ID", (Kind.BUSTA_TRASPORTO,), message=_keep_client_msgid),
    Fault("env-sha1", "access", ("SIG-17",), "WARN", "envelopes signed with SHA-1 (legacy, decision D16)",
          (Kind.BUSTA_TRASPORTO,), message=_resigned(lambda b: b, "sha1")),
    Fault("env-no-daticert", "access", ("FMT-06",), "FAIL", "envelope without daticert.xml",
          (Kind.BUSTA_TRASPORTO,), message=_no_daticert),
    Fault("env-wrong-tipo", "access", ("FMT-08",), "FAIL", "envelope daticert tipo=accettazione",
          (Kind.BUSTA_TRASPORTO,), daticert=lambda d: replace(d, tipo="accettazione")),
    Fault("env-altered-original", "access", ("ENV-12",), "FAIL", "the original inside the envelope is altered",
          (Kind.BUSTA_TRASPORTO,), message=_alter_original),
    Fault("env-key-outside-index", "access", ("RIC-05", "IDX-10"), "FAIL",
          "envelopes signed with a key that is not in the providers index", (Kind.BUSTA_TRASPORTO,),
          message=lambda raw, g: raw),  # applied by the provider with its rogue key
    # ---------------------------------------------------------------- incoming point
    Fault("inc-no-presa-in-carico", "incoming", ("RIC-09",), "FAIL", "no presa in carico for a correct envelope"),
    Fault("inc-presa-to-user", "incoming", ("GEN-07", "GEN-08"), "FAIL", "presa in carico also delivered to the recipient"),
    Fault("inc-presa-subject-prefix", "incoming", ("FMT-18", "RIC-10"), "FAIL", "presa in carico subject misspelt",
          (Kind.PRESA_IN_CARICO,), message=_prefix("PRESA IN CARICO: ", "PRESA-IN-CARICO: ")),
    Fault("inc-presa-no-ricezione", "incoming", ("FMT-16",), "FAIL", "presa in carico without ricezione",
          (Kind.PRESA_IN_CARICO,), daticert=lambda d: replace(d, ricezione=[])),
    Fault("inc-unverified-as-pec", "incoming", ("RIC-04", "RIC-14", "RIC-03"), "FAIL",
          "an unsigned or forged envelope is delivered as PEC and acknowledged"),
    Fault("inc-anomaly-with-daticert", "incoming", ("ANO-10",), "FAIL", "anomaly envelopes carry a daticert",
          (Kind.BUSTA_ANOMALIA,), message=_anomaly_with_daticert),
    Fault("inc-anomaly-subject-prefix", "incoming", ("FMT-18", "ANO-06"), "FAIL", "anomaly subject prefix misspelt",
          (Kind.BUSTA_ANOMALIA,), message=_prefix("ANOMALIA MESSAGGIO: ", "ANOMALIA: ")),
    Fault("inc-virus-forwarded", "incoming", ("VIR-05",), "FAIL", "an infected envelope is delivered"),
    Fault("inc-no-rilevazione-virus", "incoming", ("VIR-07", "VIR-08"), "FAIL",
          "no rilevazione virus for an infected envelope"),
    Fault("inc-rilevazione-no-mittente", "incoming", ("VIR-07",), "FAIL", "rilevazione virus without X-Mittente",
          (Kind.RILEVAZIONE_VIRUS,), message=_drop("X-Mittente")),
    Fault("inc-rilevazione-to-user", "incoming", ("VIR-07", "GEN-01"), "FAIL",
          "rilevazione virus sent to the original sender instead of the sending provider's mailReceipt"),
    Fault("inc-sha1-refused", "incoming", ("SIG-19",), "FAIL",
          "an envelope signed with SHA-1 by a peer is treated as an anomaly (decision D16)"),
    # ---------------------------------------------------------------- delivery point
    Fault("dlv-no-consegna", "delivery", ("CON-06",), "FAIL", "no delivery receipt"),
    Fault("dlv-lose-one-in-ten", "delivery", ("CON-06",), "FAIL",
          "one delivery receipt in ten is never issued (the first, the eleventh, ...): a loss only load shows"),
    Fault("dlv-consegna-subject-prefix", "delivery", ("FMT-18", "CON-05"), "FAIL",
          "delivery receipt subject misspelt",
          (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA),
          message=_prefix("CONSEGNA: ", "AVVENUTA CONSEGNA: ")),
    Fault("dlv-cc-gets-completa", "delivery", ("CON-09", "MUL-05"), "FAIL", "a Cc recipient is given a complete receipt"),
    Fault("dlv-wrong-brief-hash", "delivery", ("CON-13",), "FAIL", "brief receipts carry a wrong hash",
          (Kind.CONSEGNA_BREVE,), message=_wrong_hash),
    Fault("dlv-completa-no-original", "delivery", ("CON-08",), "FAIL", "complete receipt without the original",
          (Kind.CONSEGNA_COMPLETA,), message=_no_original),
    Fault("dlv-consegna-no-consegna-element", "delivery", ("FMT-15",), "FAIL",
          "delivery receipt daticert without consegna",
          (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA),
          daticert=lambda d: replace(d, consegna=None)),
    Fault("dlv-receipt-for-anomaly", "delivery", ("ANO-13", "CON-03"), "FAIL",
          "a delivery receipt is sent for an anomaly envelope (around a signed message that has a daticert)"),
    Fault("dlv-mancata-errore-nessuno", "delivery", ("CON-20",), "FAIL", "non-delivery daticert says errore=nessuno",
          (Kind.MANCATA_CONSEGNA,), daticert=lambda d: replace(d, errore="nessuno")),
    Fault("dlv-mancata-no-code", "delivery", ("NOT-01",), "WARN",
          "non-delivery errore-esteso without the x.y.z code (decision D18)", (Kind.MANCATA_CONSEGNA,),
          daticert=lambda d: replace(d, errore_esteso="casella inesistente")),
    Fault("dlv-no-mancata-consegna", "delivery", ("CON-18",), "FAIL",
          "no non-delivery notice for an unknown mailbox"),
    # ---------------------------------------------------------------- sender-side tracking
    Fault("trk-no-preavviso", "tracking", ("TMO-02",), "FAIL", "no 12 h notice"),
    Fault("trk-24h-twice", "tracking", ("TMO-03", "TMO-08"), "FAIL", "the 24 h notice is sent twice"),
    Fault("trk-24h-early", "tracking", ("TMO-03",), "FAIL", "the 24 h notice is sent before the 22 h mark"),
    Fault("trk-preavviso-despite-consegna", "tracking", ("TMO-07",), "FAIL",
          "a 12 h notice although the consegna arrived in time"),
    Fault("trk-timeout-to-recipient", "tracking", ("TMO-09", "GEN-01"), "FAIL",
          "timeout notices addressed to the recipient instead of the sender (decision D3)"),
    Fault("trk-24h-no-code", "tracking", ("NOT-04",), "WARN", "24 h notice errore-esteso without 5.4.1",
          (Kind.MANCATA_CONSEGNA_24H,), daticert=lambda d: replace(
              d, errore_esteso=(d.errore_esteso or "").replace("5.4.1", "5.4.7", 1))),
    Fault("trk-no-virus-notice", "tracking", ("VIR-10",), "FAIL",
          "a rilevazione virus is not turned into a virus non-delivery notice"),
    Fault("trk-virus-notice-no-flag", "tracking", ("VIR-10",), "FAIL",
          "virus non-delivery notice without X-VerificaSicurezza", (Kind.MANCATA_CONSEGNA_VIRUS,),
          message=_drop(H_VERIFICA_SICUREZZA)),
    Fault("trk-retry-forever", "tracking", ("TMO-01",), "FAIL",
          "a deferred envelope is retried past the idle limit, at the plain retry interval, forever"),
    Fault("trk-late-consegna-dropped", "tracking", ("TMO-08",), "FAIL",
          "a consegna arriving after the 24 h notice is thrown away instead of delivered to the sender"),
    Fault("dlv-consegna-not-stored", "delivery", ("CON-02",), "FAIL",
          "the delivery receipt is issued but the envelope is never stored in the mailbox"),
    Fault("dlv-variant-mislabelled", "delivery", ("CON-17",), "FAIL",
          "a concise receipt's daticert names ricevuta tipo=completa whatever was asked",
          (Kind.CONSEGNA_SINTETICA,), daticert=lambda d: replace(d, ricevuta="completa")),
    Fault("inc-crl-not-refreshed", "incoming", ("RIC-07",), "FAIL",
          "the CRLs loaded at start are never reloaded: a certificate revoked later is still trusted"),
    Fault("inc-infected-notice-as-anomaly", "incoming", ("VIR-15",), "FAIL",
          "an infected receipt is forwarded to the user wrapped in an anomaly envelope"),
    Fault("inc-anomaly-routing-lost", "incoming", ("ANO-11",), "FAIL",
          "the anomaly envelope travels with the provider's own reverse path, not the original sender's"),
    Fault("inc-anomaly-text-no-sender", "incoming", ("ANO-09",), "FAIL",
          "the anomaly envelope's text does not name the original sender", (Kind.BUSTA_ANOMALIA,),
          message=_texts(lambda text, sub: re.sub(r'proveniente da (&quot;|")[^"&]*(&quot;|")',
                                                  "proveniente da un mittente esterno", text))),
    # ---------------------------------------------------------------- message form, one deviation each
    Fault("env-no-x-trasporto", "access", ("ENV-02",), "FAIL", "envelope without X-Trasporto",
          (Kind.BUSTA_TRASPORTO,), message=_drop(H_TRASPORTO)),
    Fault("acc-two-type-headers", "access", ("GEN-04",), "FAIL",
          "the acceptance receipt carries X-Trasporto besides X-Ricevuta", (Kind.ACCETTAZIONE,),
          message=lambda raw, g: set_header(raw, H_TRASPORTO, "posta-certificata")),
    Fault("acc-english-ricevuta", "access", ("FMT-19",), "FAIL",
          "acceptance X-Ricevuta value in English (accepted)", (Kind.ACCETTAZIONE,),
          message=lambda raw, g: set_header(raw, H_RICEVUTA, "accepted")),
    Fault("env-date-after-acceptance", "access", ("ENV-03",), "FAIL",
          "envelope Date taken when the envelope is built, a minute after the acceptance instant",
          (Kind.BUSTA_TRASPORTO,), message=_shift_date(60)),
    Fault("acc-date-later", "access", ("TIM-02",), "FAIL",
          "acceptance receipt Date two minutes after the event its daticert reports", (Kind.ACCETTAZIONE,),
          message=_shift_date(120)),
    Fault("acc-clock-unset", "access", ("GEN-06",), "FAIL",
          "acceptance receipt Date from a clock that was never set (1 January 1970)", (Kind.ACCETTAZIONE,),
          message=lambda raw, g: set_header(raw, "Date", "Thu, 01 Jan 1970 01:00:00 +0100")),
    Fault("env-sender-header", "access", ("ENV-06",), "FAIL", "envelope with a Sender field other than From",
          (Kind.BUSTA_TRASPORTO,), message=lambda raw, g: set_header(raw, "Sender", "smtp@pec.riferimento.test")),
    Fault("env-no-reply-to", "access", ("ENV-07",), "FAIL", "envelope without Reply-To",
          (Kind.BUSTA_TRASPORTO,), message=_drop("Reply-To")),
    Fault("env-no-cc", "access", ("ENV-01",), "FAIL", "envelope drops the original's Cc field",
          (Kind.BUSTA_TRASPORTO,), message=_drop("Cc")),
    Fault("env-msgid-other", "access", ("ENV-08",), "FAIL",
          "envelope Message-ID differs from the identificativo of its daticert", (Kind.BUSTA_TRASPORTO,),
          message=lambda raw, g: set_header(raw, "Message-ID", "<opec.altro.0000@pec.riferimento.test>")),
    Fault("env-no-riferimento", "access", ("ENV-09",), "FAIL", "envelope without X-Riferimento-Message-ID",
          (Kind.BUSTA_TRASPORTO,), message=_drop(H_RIFERIMENTO)),
    Fault("env-text-no-msgid", "access", ("ENV-11",), "FAIL", "envelope text without the PEC msgid line",
          (Kind.BUSTA_TRASPORTO,), message=_texts(_text_without("Identificativo messaggio"))),
    Fault("env-no-ricevuta", "access", ("ENV-13",), "FAIL", "envelope daticert without ricevuta",
          (Kind.BUSTA_TRASPORTO,), daticert=lambda d: replace(d, ricevuta=None)),
    Fault("acc-xml-before-text", "access", ("FMT-01",), "FAIL", "acceptance receipt with the XML before the text",
          (Kind.ACCETTAZIONE,), message=_inner(_xml_first)),
    Fault("acc-text-8bit", "access", ("FMT-02",), "FAIL", "acceptance text sent 8bit with octets above 127",
          (Kind.ACCETTAZIONE,), message=_recode_text(encoding="8bit")),
    Fault("acc-text-utf8", "access", ("FMT-03",), "FAIL", "acceptance text in UTF-8 instead of ISO-8859-1",
          (Kind.ACCETTAZIONE,), message=_recode_text(charset="utf-8")),
    Fault("acc-html-remote-image", "access", ("FMT-04",), "FAIL", "acceptance HTML text loads a remote image",
          (Kind.ACCETTAZIONE,), message=_texts(_remote_image, ("html",))),
    Fault("env-original-misnamed", "access", ("FMT-05",), "FAIL", "the envelope's original is named messaggio.eml",
          (Kind.BUSTA_TRASPORTO,), message=_inner(_rename_original)),
    Fault("acc-errore-outside-dtd", "access", ("FMT-07",), "FAIL",
          "acceptance daticert errore value outside the DTD (nessun-errore)", (Kind.ACCETTAZIONE,),
          daticert=lambda d: replace(d, errore="nessun-errore")),
    Fault("acc-iso-giorno", "access", ("FMT-11",), "FAIL", "acceptance daticert giorno as yyyy-mm-dd",
          (Kind.ACCETTAZIONE,), daticert=lambda d: replace(d, giorno="-".join(reversed(d.giorno.split("/"))))),
    Fault("acc-msgid-is-pec-id", "access", ("FMT-13",), "FAIL",
          "acceptance daticert msgid holds the PEC msgid, not the client's", (Kind.ACCETTAZIONE,),
          daticert=lambda d: replace(d, msgid=f"&lt;{d.identificativo}&gt;")),
    Fault("acc-identificativo-brackets", "access", ("FMT-24",), "FAIL",
          "acceptance daticert identificativo in angle brackets", (Kind.ACCETTAZIONE,),
          daticert=lambda d: replace(d, identificativo=f"<{d.identificativo.strip('<>')}>")),
    Fault("dlv-completa-no-ricevuta", "delivery", ("FMT-14",), "FAIL", "complete receipt daticert without ricevuta",
          (Kind.CONSEGNA_COMPLETA,), daticert=lambda d: replace(d, ricevuta=None)),
    Fault("dlv-mancata-no-errore-esteso", "delivery", ("FMT-17",), "FAIL",
          "non-delivery daticert without errore-esteso", (Kind.MANCATA_CONSEGNA,),
          daticert=lambda d: replace(d, errore_esteso=None)),
    Fault("acc-text-other-subject", "access", ("FMT-20",), "FAIL",
          "acceptance text names another subject than its daticert", (Kind.ACCETTAZIONE,),
          message=_texts(_text_subject_changed)),
    Fault("acc-text-plain-only", "access", ("FMT-25",), "WARN", "acceptance text is text/plain only",
          (Kind.ACCETTAZIONE,), message=_inner(_plain_only)),
    Fault("acc-text-english", "access", ("TXT-01",), "WARN", "acceptance text in English",
          (Kind.ACCETTAZIONE,), message=_texts(_text_english)),
    Fault("acc-text-iso-date", "access", ("TIM-04",), "FAIL", "acceptance text date as yyyy-mm-dd",
          (Kind.ACCETTAZIONE,), message=_texts(_text_iso_date)),
    Fault("acc-utc-daticert", "access", ("TIM-03",), "FAIL", "acceptance daticert time in UTC (+0000)",
          (Kind.ACCETTAZIONE,), daticert=_utc),
    Fault("env-from-not-service-address", "access", ("GEN-09",), "FAIL",
          "envelope From is a mailbox other than the service address", (Kind.BUSTA_TRASPORTO,),
          message=lambda raw, g: set_header(raw, "From", (get_header(raw, "From") or "").replace(
              g.service_address, "pec@" + g.service_address.partition("@")[2]))),
    Fault("acc-from-other-address", "access", ("SIG-03",), "FAIL",
          "acceptance From differs from the signing certificate's address", (Kind.ACCETTAZIONE,),
          message=lambda raw, g: set_header(raw, "From", "ricevute@" + g.service_address.partition("@")[2])),
    Fault("acc-no-text", "access", ("ACC-13",), "FAIL", "acceptance receipt without a text part",
          (Kind.ACCETTAZIONE,), message=_inner(_no_text)),
    Fault("env-msgid-no-domain", "access", ("ACC-15",), "FAIL", "envelope Message-ID without a domain part",
          (Kind.BUSTA_TRASPORTO,), message=lambda raw, g: set_header(raw, "Message-ID", (
              get_header(raw, "Message-ID") or "").replace("@", ".", 1))),
    Fault("acc-destinatari-partial", "access", ("MUL-01",), "FAIL",
          "acceptance daticert lists only the first recipient", (Kind.ACCETTAZIONE,),
          daticert=lambda d: replace(d, destinatari=d.destinatari[:1])),
    Fault("env-destinatari-partial", "access", ("MUL-08", "GEN-02"), "FAIL",
          "envelope daticert lists only the first of its To and Cc recipients", (Kind.BUSTA_TRASPORTO,),
          daticert=lambda d: replace(d, destinatari=d.destinatari[:1])),
    Fault("dlv-consegna-no-text", "delivery", ("CON-07",), "FAIL", "delivery receipt without a text part",
          (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA), message=_inner(_no_text)),
    Fault("inc-presa-no-text", "incoming", ("RIC-12",), "FAIL", "presa in carico without a text part",
          (Kind.PRESA_IN_CARICO,), message=_inner(_no_text)),
    Fault("inc-presa-to-header-other", "incoming", ("IDX-11",), "FAIL",
          "presa in carico To names the sender instead of the sending provider's mailReceipt",
          (Kind.PRESA_IN_CARICO,), message=lambda raw, g: set_header(raw, "To", "postmaster@pec.controparte.test")),
    Fault("inc-rilevazione-with-original", "incoming", ("VIR-09",), "FAIL", "rilevazione virus carries the original",
          (Kind.RILEVAZIONE_VIRUS,), message=_with_original),
    Fault("trk-timeout-with-original", "tracking", ("TMO-10",), "FAIL", "timeout notices carry the original",
          (Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H), message=_with_original),
    Fault("dlv-mancata-subject-prefix", "delivery", ("CON-19",), "FAIL", "non-delivery subject prefix misspelt",
          (Kind.MANCATA_CONSEGNA,), message=_prefix("AVVISO DI MANCATA CONSEGNA: ", "MANCATA CONSEGNA: ")),
    Fault("dlv-completa-client-msgid", "delivery", ("CON-23",), "FAIL",
          "the complete receipt's postacert.eml keeps the client Message-ID", (Kind.CONSEGNA_COMPLETA,),
          message=_keep_client_msgid),
    # ---------------------------------------------------------------- anomaly envelope
    Fault("inc-anomaly-misprint", "incoming", ("ANO-04",), "FAIL", "anomaly header spelt X-Trasplorto: errore",
          (Kind.BUSTA_ANOMALIA,), message=lambda raw, g: set_header(drop_header(raw, H_TRASPORTO),
                                                                     "X-Trasplorto", "errore")),
    Fault("inc-anomaly-new-msgid", "incoming", ("ANO-03",), "FAIL",
          "anomaly envelope gets a Message-ID of its own instead of the received one", (Kind.BUSTA_ANOMALIA,),
          message=lambda raw, g: set_header(raw, "Message-ID", f"<anomalia.0001@{g.domain}>")),
    Fault("inc-anomaly-date-later", "incoming", ("ANO-05",), "FAIL",
          "anomaly envelope Date an hour after the message arrived", (Kind.BUSTA_ANOMALIA,), message=_shift_date(3600)),
    Fault("inc-anomaly-plain-from", "incoming", ("ANO-07",), "FAIL",
          "anomaly From without the original sender in the display name", (Kind.BUSTA_ANOMALIA,),
          message=lambda raw, g: set_header(raw, "From", g.service_address)),
    Fault("inc-anomaly-no-reply-to", "incoming", ("ANO-08",), "FAIL",
          "anomaly envelope adds no Reply-To for a message that had none", (Kind.BUSTA_ANOMALIA,),
          message=_drop("Reply-To")),
    Fault("inc-anomaly-unsigned", "incoming", ("ANO-12",), "FAIL", "anomaly envelopes are not signed",
          (Kind.BUSTA_ANOMALIA,), message=lambda raw, g: unsign(raw)),
    Fault("inc-anomaly-no-original", "incoming", ("ANO-02",), "FAIL",
          "anomaly envelope without the received message", (Kind.BUSTA_ANOMALIA,), message=_no_original),
    Fault("inc-anomaly-text-other-subject", "incoming", ("ANO-09",), "FAIL",
          "anomaly text names another subject than the received message's", (Kind.BUSTA_ANOMALIA,),
          message=_texts(_text_subject_changed)),
    # ---------------------------------------------------------------- flows: access point and transport
    Fault("acc-no-starttls", "access", ("ACC-02", "SEC-02"), "FAIL",
          "the submission service offers no STARTTLS and takes AUTH in clear"),
    Fault("acc-auth-in-clear", "access", ("SEC-02",), "FAIL",
          "the submission service takes AUTH and mail before STARTTLS"),
    Fault("acc-no-auth-required", "access", ("ACC-01",), "FAIL",
          "the access point takes submissions without authentication"),
    Fault("acc-two-from-accepted", "access", ("ACC-04", "ACC-03"), "FAIL", "a submission with two From addresses is accepted"),
    Fault("acc-cc-only-accepted", "access", ("ACC-05", "ACC-03"), "FAIL", "a submission without To (only Cc) is accepted"),
    Fault("acc-max-49-recipients", "access", ("LIM-01",), "FAIL", "a message to 50 recipients is refused"),
    Fault("acc-size-per-message", "access", ("MUL-07",), "FAIL",
          "the size limit is applied to the message alone, not multiplied by its recipients"),
    Fault("acc-no-size-limit", "access", ("SIZ-01",), "FAIL", "messages over the size limit are accepted"),
    Fault("acc-no-envelope", "access", ("ACC-17",), "FAIL",
          "an accepted message gets its acceptance receipt but no transport envelope"),
    Fault("acc-tipo-ricevuta-ignored", "access", ("ACC-18",), "FAIL",
          "the client's X-TipoRicevuta is ignored: every envelope asks for completa"),
    Fault("env-default-breve", "access", ("ENV-16",), "FAIL",
          "without a client X-TipoRicevuta the envelope asks for breve", scenarios=("formal.tipo-ricevuta-carried",)),
    Fault("acc-domain-case-sensitive", "access", ("IDX-09",), "FAIL",
          "recipient domains compared with managedDomains case-sensitively"),
    Fault("acc-local-bypass", "access", ("GEN-10",), "FAIL",
          "mail between two mailboxes of the provider is stored as it is, without envelope or receipts"),
    Fault("env-mail-from-service", "access", ("ENV-14",), "FAIL",
          "the envelope travels with the service address as MAIL FROM instead of the sender"),
    Fault("env-pec-recipients-only", "access", ("ENV-15",), "FAIL",
          "the envelope is not sent to non-PEC recipients"),
    Fault("trn-plain-to-peer", "access", ("SEC-03", "SEC-01"), "FAIL",
          "envelopes go to other providers in clear although they offer STARTTLS"),
    Fault("idx-never-refreshed", "incoming", ("IDX-07",), "FAIL",
          "the local copy of the providers index is never refreshed"),
    # ---------------------------------------------------------------- flows: incoming point
    Fault("inc-no-starttls", "incoming", ("SEC-04", "SEC-01"), "FAIL", "the incoming point offers no STARTTLS"),
    Fault("inc-no-crl-check", "incoming", ("RIC-06", "SIG-14"), "FAIL",
          "the incoming point never looks the signer up in the CRL: a revoked certificate passes",
          scenarios=("anomaly.revoked-certificate",)),
    Fault("inc-first-certificate-only", "incoming", ("IDX-12",), "FAIL",
          "only the first certificate of an index record is trusted: a renewed certificate makes anomalies"),
    Fault("inc-malformed-as-pec", "incoming", ("RIC-08",), "FAIL",
          "signed messages are not checked for form: a malformed one is delivered as PEC"),
    Fault("inc-malformed-dropped", "incoming", ("ANO-14",), "FAIL",
          "a signed but malformed message is thrown away instead of delivered in an anomaly envelope"),
    Fault("inc-ordinary-delivered-bare", "incoming", ("ANO-01",), "FAIL",
          "ordinary mail is put in the mailbox as it came, without an anomaly envelope"),
    Fault("inc-ordinary-gets-mancata", "incoming", ("CON-21",), "FAIL",
          "ordinary mail to an unknown mailbox gets a PEC non-delivery notice"),
    Fault("inc-ordinary-not-scanned", "incoming", ("VIR-13",), "FAIL",
          "ordinary mail is not checked for viruses"),
    Fault("inc-infected-notice-forwarded", "incoming", ("VIR-15",), "FAIL",
          "an infected notice (not an envelope) is delivered to the recipient"),
    Fault("inc-receipt-for-notice", "incoming", ("RIC-13", "CON-01"), "FAIL",
          "a delivery receipt is sent back for a notice delivered to a user"),
    Fault("inc-presa-per-recipient", "incoming", ("MUL-03",), "FAIL",
          "one presa in carico per recipient instead of one per SMTP transaction"),
    Fault("inc-one-rilevazione", "incoming", ("MUL-06",), "FAIL",
          "one rilevazione virus for the first infected recipient only"),
    Fault("inc-no-presa-for-infected", "incoming", ("VIR-06",), "WARN",
          "no presa in carico for a correct envelope that carries a virus (decision D24)"),
    # ---------------------------------------------------------------- flows: delivery point
    Fault("dlv-stamps-header", "delivery", ("CON-04",), "FAIL",
          "the delivery point adds a header field of its own to what it stores"),
    Fault("dlv-cc-gets-breve", "delivery", ("CON-11",), "FAIL", "with breve requested, Cc recipients get a brief receipt"),
    Fault("dlv-sintetica-ignored", "delivery", ("CON-17",), "FAIL",
          "with sintetica requested, every recipient gets a complete receipt"),
    Fault("dlv-cc-wins", "delivery", ("CON-10",), "FAIL",
          "a recipient named in both To and Cc gets a concise receipt"),
    Fault("dlv-breve-keeps-attachments", "delivery", ("CON-12", "CON-13"), "FAIL",
          "brief receipts keep named parts instead of their hashes"),
    Fault("dlv-breve-recodes-text", "delivery", ("CON-12",), "FAIL",
          "brief receipts re-encode the original's unnamed text part to base64"),
    Fault("dlv-breve-keeps-attached-message", "delivery", ("CON-14",), "FAIL",
          "brief receipts keep an attached message instead of its hash"),
    Fault("dlv-breve-hashes-signature", "delivery", ("CON-15",), "FAIL",
          "brief receipts of a signed original replace its signature part by a hash"),
    Fault("dlv-breve-hashes-opaque", "delivery", ("CON-16",), "FAIL",
          "brief receipts of an opaque S/MIME original replace it by a hash"),
    Fault("dlv-mancata-errore-altro", "delivery", ("NOT-02",), "WARN",
          "non-delivery for an unknown mailbox says errore=altro", (Kind.MANCATA_CONSEGNA,),
          daticert=lambda d: replace(d, errore="altro") if "5.1.1" in (d.errore_esteso or "") else d),
    Fault("dlv-full-mailbox-code", "delivery", ("NOT-03",), "WARN",
          "non-delivery for a full mailbox gives code 5.0.0", (Kind.MANCATA_CONSEGNA,),
          daticert=lambda d: replace(d, errore_esteso=(d.errore_esteso or "").replace("5.2.2", "5.0.0"))),
    # ---------------------------------------------------------------- flows: sender-side tracking
    Fault("trk-presa-ignored", "tracking", ("TMO-04",), "FAIL",
          "a presa in carico within 12 h does not stop the 12 h notice"),
    Fault("trk-no-24h", "tracking", ("TMO-06",), "FAIL", "the 24 h notice is never sent"),
    Fault("trk-presa-stops-24h", "tracking", ("TMO-13",), "FAIL", "a presa in carico stops the 24 h notice"),
    Fault("trk-late-consegna-ignored", "tracking", ("TMO-05",), "FAIL",
          "a consegna between 12 h and 22 h does not stop the 24 h notice"),
    Fault("trk-timers-per-transaction", "tracking", ("MUL-10",), "FAIL",
          "one recipient's presa in carico or consegna stops the timers of every recipient",
          scenarios=("timeouts.two-recipients",)),
    Fault("trk-virus-notice-no-code", "tracking", ("NOT-05",), "WARN",
          "virus non-delivery errore-esteso without the x.y.z code", (Kind.MANCATA_CONSEGNA_VIRUS,),
          daticert=lambda d: replace(d, errore_esteso="virus rilevato nel messaggio")),
    # ---------------------------------------------------------------- the target's published index
    # Flow faults: the built-in target publishes its signed LDIF altered this way (reference.deploy.publish_index).
    Fault("idx-dn-outside-postacert", "index", ("IDX-01",), "FAIL",
          "the published record's DN is not under o=postacert", scenarios=("index.published",)),
    Fault("idx-no-provider-name", "index", ("IDX-02",), "FAIL",
          "the published record has no providerName attribute", scenarios=("index.published",)),
    Fault("idx-no-main-record", "index", ("IDX-03",), "FAIL",
          "the only published record is a secondary environment (providerUnit), with LDIFLocationURL",
          scenarios=("index.published",)),
    Fault("idx-unsigned", "index", ("IDX-04",), "FAIL", "the index is published as plain LDIF, not signed",
          scenarios=("index.published",)),
    Fault("idx-wrong-certificate-hash", "index", ("IDX-05",), "FAIL",
          "providerCertificateHash is not the SHA-1 of the listed certificate", scenarios=("index.published",)),
    Fault("idx-receipt-in-brackets", "index", ("IDX-06",), "FAIL",
          "mailReceipt is published in angle brackets", scenarios=("index.published",)),
    Fault("idx-service-domain-unlisted", "index", ("IDX-14",), "WARN",
          "the service address's domain is not among the record's managedDomains", scenarios=("index.published",)),
    Fault("idx-renewal-gap", "index", ("SIG-16",), "FAIL",
          "the renewed certificate listed in the record starts only after the current one ends",
          scenarios=("index.published",)),
    # ---------------------------------------------------------------- a whole transaction
    Fault("env-to-only", "access", ("MUL-02",), "FAIL", "the envelope goes to the To recipients only, not to Cc"),
    Fault("dlv-first-recipient-receipt-only", "delivery", ("MUL-04",), "FAIL",
          "one delivery receipt per envelope, for its first recipient only",
          scenarios=("incoming.two-recipients-one-transaction",)),
    Fault("acc-size-limit-20mb", "access", ("LIM-02",), "FAIL",
          "size x recipients limited to 20 MB, below the decree's 30 MB floor"),
    Fault("acc-no-further-bound", "access", ("SIZ-03",), "FAIL",
          "no SMTP size bound: a message beyond the further bound gets a non-accettazione"),
    Fault("acc-own-identificativo", "access", ("FMT-12",), "FAIL",
          "the acceptance daticert identificativo is the receipt's own id, not the envelope's",
          (Kind.ACCETTAZIONE,), daticert=lambda d: replace(d, identificativo=d.identificativo.replace("opec.", "ric.", 1))),
    Fault("acc-clock-3s-slow", "access", ("TIM-06",), "FAIL",
          "acceptance and envelope times from a clock 3 s slow", (Kind.ACCETTAZIONE, Kind.BUSTA_TRASPORTO),
          daticert=_slow_clock(3), message=_slow_clock_message(3)),
    Fault("acc-clock-10min-slow", "access", ("TIM-01",), "FAIL",
          "acceptance and envelope times from a clock 10 minutes slow", (Kind.ACCETTAZIONE, Kind.BUSTA_TRASPORTO),
          daticert=_slow_clock(600), message=_slow_clock_message(600)),
    Fault("env-relayed-outside", "access", ("SEC-05",), "FAIL",
          "envelopes leave through a relay outside the provider (its Received field in the trace)",
          (Kind.BUSTA_TRASPORTO,), message=_relayed_outside),
    Fault("inc-notice-rewrapped", "incoming", ("SEC-08", "RIC-01"), "FAIL",
          "notices are stored with their base64 re-cut to 64-character lines"),
    Fault("trk-recipient-from-text", "tracking", ("GEN-11",), "FAIL",
          "the recipient of a delivery receipt is read from its text, not its daticert"),
    Fault("inc-ordinary-refused", "incoming", ("ANO-15",), "FAIL",
          "ordinary mail is refused although the provider declares it forwards it"),
    Fault("inc-ordinary-virus-notice", "incoming", ("VIR-14",), "FAIL",
          "infected ordinary mail is answered with a PEC virus non-delivery notice"),
    Fault("inc-ordinary-unknown-dropped", "incoming", ("RIC-02",), "WARN",
          "ordinary mail to an unknown mailbox is taken with 250 and thrown away"),
    # ---------------------------------------------------------------- signature and certificate
    Fault("sig-cms-no-certificate", "access", ("SIG-02",), "FAIL",
          "acceptance receipts signed without the signer certificate in the CMS", (Kind.ACCETTAZIONE,),
          message=_cms_without_certificates),
    Fault("acc-from-unmanaged-domain", "access", ("SIG-15",), "WARN",
          "acceptance receipts From a domain the provider's index record does not manage", (Kind.ACCETTAZIONE,),
          message=lambda raw, g: set_header(raw, "From", "posta-certificata@riferimento.test")),
    Fault("sig-cert-small-key", "access", ("SIG-04",), "FAIL", "the signing certificate has a 1024-bit RSA key"),
    Fault("sig-cert-email-in-subject", "access", ("SIG-06",), "WARN",
          "the signing certificate also puts the e-mail address in the subject DN"),
    Fault("sig-cert-ku-not-critical", "access", ("SIG-07",), "FAIL", "the signing certificate's keyUsage is not critical"),
    Fault("sig-cert-no-aki", "access", ("SIG-08",), "FAIL",
          "the signing certificate has no authorityKeyIdentifier"),
    Fault("sig-cert-no-ski", "access", ("SIG-09",), "FAIL", "the signing certificate has no subjectKeyIdentifier"),
    Fault("sig-cert-san-critical", "access", ("SIG-10",), "FAIL", "the signing certificate's subjectAltName is critical"),
    Fault("sig-cert-basic-constraints", "access", ("SIG-11",), "FAIL",
          "the signing certificate carries basicConstraints"),
    Fault("sig-cert-critical-policy", "access", ("SIG-12",), "FAIL",
          "the signing certificate marks certificatePolicies critical"),
    Fault("acc-from-unchecked", "access", ("ACC-06",), "FAIL",
          "the From field is never compared with the reverse path or the authenticated user"),
    Fault("acc-open-submission", "access", ("SEC-07",), "FAIL",
          "the submission port takes mail in clear without AUTH (configured like an MX)"),
    Fault("inc-presa-to-sender", "incoming", ("RIC-11",), "FAIL",
          "the presa in carico goes to the original sender instead of the sending provider's mailReceipt"),
    Fault("sig-cert-subject-other-name", "access", ("SIG-05",), "FAIL",
          "the certificate the index lists for the provider names another organisation than its providerName"),
    Fault("trk-virus-notice-errore-altro", "tracking", ("NOT-05",), "WARN",
          "virus non-delivery daticert says errore=altro", (Kind.MANCATA_CONSEGNA_VIRUS,),
          daticert=lambda d: replace(d, errore="altro")),
    Fault("dlv-receipt-from-receipt-mailbox", "delivery", ("GEN-06", "GEN-09"), "FAIL",
          "delivery receipts From the receipt mailbox, not the service address",
          (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA),
          message=lambda raw, g: set_header(raw, "From", "ricevute@" + g.service_address.partition("@")[2])),
)

# Deployment faults: the test PKI issues the provider's certificate (the one its index record lists) so.
CERTIFICATE_ORGANIZATION = {"sig-cert-subject-other-name": "Servizi Telematici Esempio S.r.l."}


def certificate_organization(faults) -> str | None:
    """The organisation the deployment puts in the provider certificate's subject instead of its name."""
    return next((CERTIFICATE_ORGANIZATION[n] for n in faults if n in CERTIFICATE_ORGANIZATION), None)


CATALOGUE: dict[str, Fault] = {f.name: f for f in FAULTS}


class UnknownFault(KeyError):
    pass


class FaultSet:
    """The faults switched on in one provider."""

    def __init__(self, names: list[str] | tuple[str, ...] = ()):
        unknown = [n for n in names if n not in CATALOGUE]
        if unknown:
            raise UnknownFault(f"unknown fault(s): {', '.join(unknown)}")
        self.active = tuple(CATALOGUE[n] for n in names)
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def certificate_defect(self) -> str | None:
        """The profile defect of the signing certificate a switched-on fault asks for, if any."""
        return next((CERTIFICATE_DEFECTS[f.name] for f in self.active if f.name in CERTIFICATE_DEFECTS), None)

    def on(self, name: str) -> bool:
        if name not in CATALOGUE:
            raise UnknownFault(name)
        return any(f.name == name for f in self.active)

    def one_in(self, name: str, n: int) -> bool:
        """For a fault that hits a share of the flow: true for the 1st, (n+1)th, ... call while it is on."""
        if not self.on(name):
            return False
        with self._lock:
            count = self._counts.get(name, 0)
            self._counts[name] = count + 1
        return count % n == 0

    def daticert_hook(self, kind: Kind, d: dc.DatiCert) -> dc.DatiCert:
        for fault in self.active:
            if fault.daticert is not None and kind in fault.kinds:
                d = fault.daticert(d)
        return d

    def transform(self, kind: Kind, raw: bytes, gestore: Gestore) -> bytes:
        for fault in self.active:
            if fault.message is not None and kind in fault.kinds:
                raw = fault.message(raw, gestore)
        return raw

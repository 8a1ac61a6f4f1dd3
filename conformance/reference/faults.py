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

from ..pec import daticert as dc
from ..pec.build import Gestore
from ..pec.constants import (
    DESTINATARIO_CERTIFICATO,
    H_RIFERIMENTO,
    H_TIPO_RICEVUTA,
    H_VERIFICA_SICUREZZA,
    Kind,
)
from ..pec.mime import CRLF, header_lines, split_entity, walk_entity
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
    Fault("acc-bcc-accepted", "access", ("ACC-08", "ACC-09"), "FAIL", "a message with Bcc addresses is accepted"),
    Fault("acc-sender-mismatch-accepted", "access", ("ACC-19", "ACC-06"), "FAIL",
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
    Fault("inc-presa-to-user", "incoming", ("GEN-07",), "FAIL", "presa in carico also delivered to the recipient"),
    Fault("inc-presa-subject-prefix", "incoming", ("FMT-18", "RIC-10"), "FAIL", "presa in carico subject misspelt",
          (Kind.PRESA_IN_CARICO,), message=_prefix("PRESA IN CARICO: ", "PRESA-IN-CARICO: ")),
    Fault("inc-presa-no-ricezione", "incoming", ("FMT-16",), "FAIL", "presa in carico without ricezione",
          (Kind.PRESA_IN_CARICO,), daticert=lambda d: replace(d, ricezione=[])),
    Fault("inc-unverified-as-pec", "incoming", ("RIC-04", "RIC-14"), "FAIL",
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
    Fault("dlv-no-consegna", "delivery", ("CON-06", "RIC-09"), "FAIL", "no delivery receipt"),
    Fault("dlv-lose-one-in-ten", "delivery", ("CON-06", "RIC-09"), "FAIL",
          "one delivery receipt in ten is never issued (the first, the eleventh, ...): a loss only load shows"),
    Fault("dlv-consegna-subject-prefix", "delivery", ("FMT-18", "CON-05"), "FAIL",
          "delivery receipt subject misspelt",
          (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA),
          message=_prefix("CONSEGNA: ", "AVVENUTA CONSEGNA: ")),
    Fault("dlv-cc-gets-completa", "delivery", ("CON-09",), "FAIL", "a Cc recipient is given a complete receipt"),
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
)

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

"""A small PEC world made by the project itself: a test CA, two providers, an index, and one
transaction rendered as each of the 14 message kinds. Used by `pec-conformance sample`, the tests
and the benchmarks; nothing here is copied from real providers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509

from . import build as b
from . import daticert as dc
from .constants import (
    CODE_TIMEOUT_12H,
    CODE_TIMEOUT_24H,
    CODE_UNKNOWN_MAILBOX,
    CODE_VIRUS,
    ERRORE_NO_DEST,
    TIPO_BREVE,
    TIPO_COMPLETA,
    TIPO_SINTETICA,
    Kind,
)
from .index import ProvidersIndex, index_records_from_providers, write_ldif
from .mime import attachment_part, multipart, text_part
from .pki import CertificateAuthority, ProviderCredentials, build_crl, generate_ca, make_provider

ALFA = ("Gestore Alfa S.p.A.", ("pec.alfa.test",))
BETA = ("Gestore Beta S.p.A.", ("pec.beta.test", "cert.beta.test"))
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@dataclass
class SampleWorld:
    ca: CertificateAuthority
    crl: x509.CertificateRevocationList
    alfa: ProviderCredentials
    beta: ProviderCredentials
    index: ProvidersIndex
    index_ldif: bytes

    def gestore(self, creds: ProviderCredentials, digest: str = "sha256") -> b.Gestore:
        return b.Gestore(name=creds.provider_name, domain=creds.domains[0], key=creds.key,
                         certificate=creds.certificate, service_address=creds.service_address, digest=digest)


def make_world(now: datetime | None = None) -> SampleWorld:
    now = now or datetime.now(UTC)
    ca = generate_ca(now=now - timedelta(days=1))
    alfa = make_provider(ca, ALFA[0], ALFA[1], not_before=now - timedelta(days=1))
    beta = make_provider(ca, BETA[0], BETA[1], not_before=now - timedelta(days=1))
    records = index_records_from_providers([alfa, beta])
    return SampleWorld(ca=ca, crl=build_crl(ca, [], now=now), alfa=alfa, beta=beta,
                       index=ProvidersIndex(records), index_ldif=write_ldif(records))


def sample_original(*, tipo_ricevuta: str | None = TIPO_COMPLETA, client_msgid: str | None = "<m42.7@client.test>",
                    reply_to: str | None = None, attachment: bytes = b"%PDF-1.4 sample invoice\n" * 40,
                    subject: str = "Fattura n. 42 di novembre: è pronta") -> bytes:
    """A user's message: text plus a named attachment, To two PEC users and one ordinary address."""
    fields = [
        ("Date", "Mon, 23 Nov 2026 10:00:00 +0100"),
        ("From", "Mario Rossi <mario.rossi@pec.alfa.test>"),
        ("To", "anna.bianchi@pec.beta.test, carlo.neri@example.org"),
        ("Cc", "luigi.verdi@cert.beta.test"),
        ("Subject", b.encode_header_value(subject)),
    ]
    if client_msgid:
        fields.append(("Message-ID", client_msgid))
    if reply_to:
        fields.append(("Reply-To", reply_to))
    if tipo_ricevuta:
        fields.append(("X-TipoRicevuta", tipo_ricevuta))
    fields.append(("MIME-Version", "1.0"))
    body = multipart("mixed", [
        text_part("Buongiorno,\r\nin allegato la fattura.\r\n", "plain", "iso-8859-1"),
        attachment_part("application/pdf", "fattura-42.pdf", attachment, disposition="attachment"),
    ], extra_fields=fields)
    return body


def ordinary_mail() -> bytes:
    return (b"From: Carlo Neri <carlo.neri@example.org>\r\nTo: anna.bianchi@pec.beta.test\r\n"
            b"Subject: Posta ordinaria\r\nMessage-ID: <plain.1@example.org>\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nCiao Anna.\r\n")


@dataclass
class SampleSet:
    messages: dict[Kind, bytes]
    original: bytes
    carried_original: bytes
    identificativo: str
    transaction: b.Transaction
    extra: dict[str, bytes] = field(default_factory=dict)


def build_all_kinds(world: SampleWorld, *, instant: datetime | None = None, digest: str = "sha256",
                    original: bytes | None = None) -> SampleSet:
    """One transaction from alfa's user to beta's users, rendered as each of the 14 kinds."""
    instant = (instant or datetime.now(UTC)).replace(microsecond=0)
    alfa, beta = world.gestore(world.alfa, digest), world.gestore(world.beta, digest)
    raw = original or sample_original()
    o = b.read_original(raw)
    ident = alfa.new_msgid(instant)
    t = b.Transaction.from_original(o, ident, world.index.is_pec_domain)
    anna, luigi = "anna.bianchi@pec.beta.test", "luigi.verdi@cert.beta.test"
    later = instant + timedelta(seconds=2)
    envelope = b.build_busta_trasporto(alfa, o, t, instant)
    carried = b.rewrite_original(raw, ident, t.msgid)
    m: dict[Kind, bytes] = {
        Kind.ACCETTAZIONE: b.build_accettazione(alfa, t, instant),
        Kind.NON_ACCETTAZIONE: b.build_non_accettazione(alfa, t, instant, "destinatario in Bcc non ammesso"),
        Kind.NON_ACCETTAZIONE_VIRUS: b.build_non_accettazione_virus(alfa, t, instant, "Eicar-Test-Signature"),
        Kind.BUSTA_TRASPORTO: envelope,
        Kind.PRESA_IN_CARICO: b.build_presa_in_carico(beta, t, later, receipt_mailbox=world.alfa.receipt_mailbox,
                                                      ricezione=[anna, luigi]),
        Kind.BUSTA_ANOMALIA: b.build_busta_anomalia(beta, ordinary_mail(), later,
                                                    reverse_path="carlo.neri@example.org",
                                                    error="messaggio non firmato da un gestore PEC"),
        Kind.RILEVAZIONE_VIRUS: b.build_rilevazione_virus(beta, t, later, recipient=anna,
                                                          receipt_mailbox=world.alfa.receipt_mailbox,
                                                          virus="Eicar-Test-Signature"),
        Kind.MANCATA_CONSEGNA_VIRUS: b.build_mancata_consegna_virus(alfa, t, later, recipient=anna,
                                                                    virus="Eicar-Test-Signature", code=CODE_VIRUS),
        Kind.CONSEGNA_COMPLETA: b.build_avvenuta_consegna(beta, t, later, recipient=anna, variant=TIPO_COMPLETA,
                                                          carried_original=carried),
        Kind.CONSEGNA_BREVE: b.build_avvenuta_consegna(beta, t, later, recipient=anna, variant=TIPO_BREVE,
                                                       carried_original=carried),
        Kind.CONSEGNA_SINTETICA: b.build_avvenuta_consegna(beta, t, later, recipient=luigi, variant=TIPO_SINTETICA,
                                                           ricevuta=t.ricevuta),
        Kind.MANCATA_CONSEGNA: b.build_mancata_consegna(
            beta, t, later, recipient=luigi, errore=ERRORE_NO_DEST,
            errore_esteso=b.error_string(CODE_UNKNOWN_MAILBOX, beta, "indirizzo non valido")),
        Kind.PREAVVISO_12H: b.build_timeout(Kind.PREAVVISO_12H, alfa, t, instant + timedelta(hours=12),
                                            recipient=anna, code=CODE_TIMEOUT_12H),
        Kind.MANCATA_CONSEGNA_24H: b.build_timeout(Kind.MANCATA_CONSEGNA_24H, alfa, t,
                                                   instant + timedelta(hours=23), recipient=anna,
                                                   code=CODE_TIMEOUT_24H),
    }
    return SampleSet(messages=m, original=raw, carried_original=carried, identificativo=ident, transaction=t,
                     extra={"ordinary": ordinary_mail(), "eicar": EICAR})


def daticert_of(message: bytes) -> dc.DatiCert | None:
    from .parse import parse_message

    return parse_message(message).daticert

"""The incoming point's three signature tests (RFC 6109 section 2.2.2): existence, origin, validity.

Pure: the caller hands the parsed message, the providers index, the trusted CAs and CRLs, and the
instant. The fourth test, formal correctness, is the validator's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import trust
from .index import IndexRecord, ProvidersIndex
from .parse import ParsedMessage


@dataclass
class OriginCheck:
    signed: bool
    verified: bool
    reason: str
    certificate: x509.Certificate | None = None
    records: list[IndexRecord] = field(default_factory=list)
    digest: str | None = None

    @property
    def certificate_der(self) -> bytes | None:
        return None if self.certificate is None else self.certificate.public_bytes(serialization.Encoding.DER)


def verify_origin(msg: ParsedMessage, index: ProvidersIndex | None, ca_certificates, crls,
                  at: datetime) -> OriginCheck:
    if msg.signed is None or msg.signature is None:
        return OriginCheck(False, False, "il messaggio non è firmato (firma assente)")
    v = msg.signature.verification
    if not v.ok:
        return OriginCheck(True, False, "la firma del messaggio non è valida: " + ("; ".join(v.errors) or "?"),
                           v.signer_certificate, digest=v.digest_algorithm)
    cert = v.signer_certificate
    der = cert.public_bytes(serialization.Encoding.DER)
    records = index.records_for_certificate(der) if index is not None else []
    if not records:
        return OriginCheck(True, False, "il certificato di firma non appartiene a un gestore dell'indice", cert,
                           digest=v.digest_algorithm)
    # At arrival, not at the signingTime the signer claims: a signer chooses its own signing time.
    result = trust.evaluate_trust(cert, at=at, ca_certificates=ca_certificates, crls=crls)
    if result.chain_valid is False or result.revoked or not result.time_valid:
        return OriginCheck(True, False, "il certificato di firma non è valido: " + "; ".join(result.reasons),
                           cert, records, v.digest_algorithm)
    return OriginCheck(True, True, "", cert, records, v.digest_algorithm)

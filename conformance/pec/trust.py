"""Certificate trust (chain, CRL, validity) and the RFC 6109 §5.5 provider certificate profile.

Pure: only the CA certificates and CRLs handed in are used; nothing is ever fetched, whatever
URL (CRL distribution point, AIA, OCSP) a certificate names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

__all__ = [
    "ProfileIssue",
    "TrustResult",
    "certificate_emails",
    "certificate_profile_issues",
    "evaluate_trust",
]

# Issuers above the end-entity certificate we are willing to walk (1 or 2 levels in practice).
_MAX_CHAIN_DEPTH = 4


@dataclass
class TrustResult:
    chain_valid: bool | None
    revoked: bool | None
    time_valid: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain_valid is True and self.revoked is not True and self.time_valid


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(certificate: x509.Certificate) -> str:
    try:
        return certificate.subject.rfc4514_string()
    except Exception:
        return f"serial {certificate.serial_number:x}"


def _time_problem(certificate: x509.Certificate, at: datetime) -> str | None:
    if at < certificate.not_valid_before_utc:
        return f"{_describe(certificate)} not yet valid at {at.isoformat()} (from {certificate.not_valid_before_utc.isoformat()})"
    if at > certificate.not_valid_after_utc:
        return f"{_describe(certificate)} expired at {at.isoformat()} (until {certificate.not_valid_after_utc.isoformat()})"
    return None


def _is_self_issued(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def _verify_with(
    public_key: object,
    signature: bytes,
    tbs: bytes,
    parameters: object,
    hash_algorithm: hashes.HashAlgorithm | None,
) -> bool:
    """Check an X.509 signature by hand: verify_directly_issued_by refuses SHA-1, legacy peers use it."""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, tbs, parameters, hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, tbs, parameters)  # type: ignore[arg-type]
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, tbs, hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, tbs)
        else:
            return False
        return True
    except Exception:  # InvalidSignature, or parameters that do not fit the key
        return False


_SIGNED_BY_CACHE: dict[tuple[bytes, bytes], bool] = {}


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `certificate` (remembered: a provider checks the same few pairs all day)."""
    key = (certificate.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    cached = _SIGNED_BY_CACHE.get(key)
    if cached is None:
        cached = _signed_by_uncached(certificate, issuer)
        if len(_SIGNED_BY_CACHE) > 4096:
            _SIGNED_BY_CACHE.clear()
        _SIGNED_BY_CACHE[key] = cached
    return cached


def _signed_by_uncached(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        return _verify_with(
            issuer.public_key(),
            certificate.signature,
            certificate.tbs_certificate_bytes,
            certificate.signature_algorithm_parameters,
            certificate.signature_hash_algorithm,
        )
    except Exception:  # unknown signature algorithm or unreadable key
        return False


_CRL_CACHE: dict[tuple[bytes, bytes], bool] = {}


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = (crl.fingerprint(hashes.SHA256()), issuer.fingerprint(hashes.SHA256()))
    if key not in _CRL_CACHE:
        if len(_CRL_CACHE) > 1024:
            _CRL_CACHE.clear()
        _CRL_CACHE[key] = _crl_signed_by_uncached(crl, issuer)
    return _CRL_CACHE[key]


def _crl_signed_by_uncached(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return _verify_with(
            issuer.public_key(),
            crl.signature,
            crl.tbs_certlist_bytes,
            crl.signature_algorithm_parameters,
            crl.signature_hash_algorithm,
        )
    except Exception:
        return False


def _can_issue(issuer: x509.Certificate) -> str | None:
    """Why `issuer` may not sign certificates, or None (absent extensions are tolerated)."""
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            return f"{_describe(issuer)} is not a CA (basicConstraints cA false)"
    except x509.ExtensionNotFound:
        pass
    except Exception as exc:
        return f"{_describe(issuer)}: extensions cannot be parsed ({exc})"
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            return f"{_describe(issuer)} keyUsage lacks keyCertSign"
    except x509.ExtensionNotFound:
        pass
    except Exception as exc:
        return f"{_describe(issuer)}: extensions cannot be parsed ({exc})"
    return None


def _build_chain(
    certificate: x509.Certificate, cas: Sequence[x509.Certificate], at: datetime, reasons: list[str]
) -> tuple[bool, x509.Certificate | None]:
    """Walk issuers among the configured CAs; every configured CA is a trust anchor."""
    if certificate in cas:
        return True, certificate if _is_self_issued(certificate) else None
    current = certificate
    direct_issuer: x509.Certificate | None = None
    seen: list[x509.Certificate] = [certificate]
    for depth in range(_MAX_CHAIN_DEPTH):
        candidates = [ca for ca in cas if ca.subject == current.issuer and ca not in seen]
        issuer = next((ca for ca in candidates if _signed_by(current, ca)), None)
        if issuer is None:
            if depth == 0:
                if candidates:
                    reasons.append(f"signature of {_describe(certificate)} does not verify with its issuer CA")
                else:
                    reasons.append(f"issuer {current.issuer.rfc4514_string()} is not a configured CA")
                return False, None
            break  # reached a configured intermediate whose own issuer is not configured: still an anchor
        problem = _can_issue(issuer) or _time_problem(issuer, at)
        if problem:
            reasons.append(f"issuer {problem}")
            return False, direct_issuer or issuer
        if direct_issuer is None:
            direct_issuer = issuer
        if _is_self_issued(issuer):
            break
        seen.append(issuer)
        current = issuer
    return True, direct_issuer


def _check_crls(
    certificate: x509.Certificate,
    issuer: x509.Certificate | None,
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
    reasons: list[str],
) -> bool | None:
    relevant = [crl for crl in crls if crl.issuer == certificate.issuer]
    if not relevant:
        reasons.append(f"no CRL from {certificate.issuer.rfc4514_string()} among those given")
        return None
    if issuer is None:
        reasons.append("CRL signature cannot be checked without the issuer CA certificate")
        return None
    usable = []
    for crl in relevant:
        if not _crl_signed_by(crl, issuer):
            reasons.append("CRL signature does not verify with the issuer CA; CRL ignored")
            continue
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            # A stale CRL still says what it says; note it, the refresh is the caller's job.
            reasons.append(f"CRL is stale (next update {crl.next_update_utc.isoformat()})")
        usable.append(crl)
    if not usable:
        return None
    for crl in usable:
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is not None:
            when = entry.revocation_date_utc
            note = " (after the instant checked)" if when > at else ""
            reasons.append(f"certificate serial {certificate.serial_number:x} revoked on {when.isoformat()}{note}")
            return True
    return False


def evaluate_trust(
    certificate: x509.Certificate,
    *,
    at: datetime,
    ca_certificates: Sequence[x509.Certificate] = (),
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> TrustResult:
    """Chain to a configured CA, revocation by the given CRLs, validity at `at`."""
    at = _utc(at)
    reasons: list[str] = []
    time_problem = _time_problem(certificate, at)
    if time_problem:
        reasons.append(time_problem)

    chain_valid: bool | None = None
    issuer: x509.Certificate | None = None
    if ca_certificates:
        chain_valid, issuer = _build_chain(certificate, list(ca_certificates), at, reasons)
    else:
        reasons.append("no CA configured: certification path not checked")
        # Without a CA only an issuer certificate passed as such could verify a CRL.

    revoked: bool | None = None
    if crls:
        revoked = _check_crls(certificate, issuer, crls, at, reasons)
    return TrustResult(chain_valid=chain_valid, revoked=revoked, time_valid=time_problem is None, reasons=reasons)


# --------------------------------------------------------------------------- profile (§5.5)


@dataclass(frozen=True)
class ProfileIssue:
    requirement: str
    message: str
    severity: str  # "FAIL" or "WARN"


_EMAILS: dict[bytes, list[str]] = {}


def certificate_emails(certificate: x509.Certificate) -> list[str]:
    """rfc822Name entries of subjectAltName (empty when absent or unparsable)."""
    key = certificate.fingerprint(hashes.SHA256())
    if key not in _EMAILS:
        if len(_EMAILS) > 4096:
            _EMAILS.clear()
        _EMAILS[key] = _certificate_emails(certificate)
    return list(_EMAILS[key])


def _certificate_emails(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:
        return []
    return list(san.get_values_for_type(x509.RFC822Name))


_OWN_CHECKS = {
    ExtensionOID.KEY_USAGE,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.BASIC_CONSTRAINTS,
}


def _key_issues(certificate: x509.Certificate) -> list[ProfileIssue]:
    issues: list[ProfileIssue] = []
    try:
        key = certificate.public_key()
    except Exception as exc:
        return [ProfileIssue("SIG-04", f"public key cannot be read: {exc}", "FAIL")]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            issues.append(ProfileIssue("SIG-04", f"RSA key of {key.key_size} bits; at least 2048 required (D16)", "FAIL"))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            issues.append(ProfileIssue("SIG-04", f"EC key on {key.curve.name}; P-256 or stronger required (D16)", "FAIL"))
    elif isinstance(key, dsa.DSAPublicKey):
        issues.append(ProfileIssue("SIG-04", "DSA key; D16 expects RSA >= 2048 or ECDSA >= P-256", "FAIL"))
    try:
        hash_algorithm = certificate.signature_hash_algorithm
    except Exception:
        hash_algorithm = None
    if hash_algorithm is not None and hash_algorithm.name in ("sha1", "md5"):
        issues.append(ProfileIssue("SIG-04", f"certificate signed with {hash_algorithm.name.upper()} (legacy, D16)", "WARN"))
    return issues


def certificate_profile_issues(
    certificate: x509.Certificate,
    *,
    provider_name: str | None = None,
    service_address: str | None = None,
) -> list[ProfileIssue]:
    """Departures from the RFC 6109 §5.5 profile (SIG-03..SIG-12) and key strength (SIG-04, D16)."""
    issues: list[ProfileIssue] = []
    if certificate.version != x509.Version.v3:
        issues.append(ProfileIssue("SIG-04", "not an X.509v3 certificate", "FAIL"))
    issues.extend(_key_issues(certificate))

    try:
        extensions = {ext.oid: ext for ext in certificate.extensions}
    except Exception as exc:  # duplicate or malformed extensions
        issues.append(ProfileIssue("SIG-04", f"extensions cannot be parsed: {exc}", "FAIL"))
        return issues

    subject = certificate.subject
    # SIG-05: provider name exactly as in the index, in CN or O.
    if provider_name is not None:
        values = [
            str(attr.value)
            for attr in subject
            if attr.oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME)
        ]
        if provider_name.strip() in (v.strip() for v in values):
            pass
        elif provider_name.strip().casefold() in (v.strip().casefold() for v in values):
            issues.append(ProfileIssue("SIG-05", f"provider name {provider_name!r} in subject differs in case", "WARN"))
        else:
            issues.append(
                ProfileIssue("SIG-05", f"provider name {provider_name!r} not in subject CN or O ({subject.rfc4514_string()})", "FAIL")
            )

    # SIG-06 / SIG-10: e-mail in subjectAltName, non-critical; not in the subject DN.
    san_ext = extensions.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    emails = certificate_emails(certificate) if san_ext is not None else []
    if san_ext is None:
        issues.append(ProfileIssue("SIG-10", "subjectAltName extension missing", "FAIL"))
    else:
        if san_ext.critical:
            issues.append(ProfileIssue("SIG-10", "subjectAltName is critical; must be non-critical", "FAIL"))
        if not emails:
            issues.append(ProfileIssue("SIG-10", "subjectAltName has no rfc822Name", "FAIL"))
    if not emails:
        issues.append(ProfileIssue("SIG-06", "no e-mail address (rfc822Name) in subjectAltName", "FAIL"))
    if subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        issues.append(ProfileIssue("SIG-06", "e-mail address in the subject DN (SHOULD NOT)", "WARN"))

    # SIG-03: the service address (From of the provider's messages) is the certificate e-mail.
    if service_address is not None and service_address.strip().casefold() not in {e.casefold() for e in emails}:
        issues.append(
            ProfileIssue("SIG-03", f"service address {service_address!r} not among certificate e-mails {emails}", "FAIL")
        )

    # SIG-07: keyUsage critical with digitalSignature, other bits consistent with RFC 5280.
    ku_ext = extensions.get(ExtensionOID.KEY_USAGE)
    if ku_ext is None:
        issues.append(ProfileIssue("SIG-07", "keyUsage extension missing", "FAIL"))
    else:
        ku = ku_ext.value
        if not ku_ext.critical:
            issues.append(ProfileIssue("SIG-07", "keyUsage is not critical", "FAIL"))
        if not ku.digital_signature:
            issues.append(ProfileIssue("SIG-07", "keyUsage lacks digitalSignature", "FAIL"))
        if ku.key_cert_sign or ku.crl_sign:
            # RFC 5280: keyCertSign needs basicConstraints cA, which this profile forbids.
            issues.append(ProfileIssue("SIG-07", "keyUsage asserts keyCertSign/cRLSign on an end-entity certificate", "FAIL"))

    # SIG-08: authorityKeyIdentifier with keyIdentifier, non-critical.
    aki_ext = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki_ext is None:
        issues.append(ProfileIssue("SIG-08", "authorityKeyIdentifier extension missing", "FAIL"))
    else:
        if aki_ext.critical:
            issues.append(ProfileIssue("SIG-08", "authorityKeyIdentifier is critical; must be non-critical", "FAIL"))
        if aki_ext.value.key_identifier is None:
            issues.append(ProfileIssue("SIG-08", "authorityKeyIdentifier lacks keyIdentifier", "FAIL"))

    # SIG-09: subjectKeyIdentifier, non-critical.
    ski_ext = extensions.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ski_ext is None:
        issues.append(ProfileIssue("SIG-09", "subjectKeyIdentifier extension missing", "FAIL"))
    elif ski_ext.critical:
        issues.append(ProfileIssue("SIG-09", "subjectKeyIdentifier is critical; must be non-critical", "FAIL"))

    # SIG-11: basicConstraints MUST NOT be present.
    if ExtensionOID.BASIC_CONSTRAINTS in extensions:
        issues.append(ProfileIssue("SIG-11", "basicConstraints present; must be absent", "FAIL"))

    # SIG-12: every other extension non-critical.
    for oid, ext in extensions.items():
        if oid not in _OWN_CHECKS and ext.critical:
            label = getattr(oid, "_name", None) or oid.dotted_string
            issues.append(ProfileIssue("SIG-12", f"extension {label} ({oid.dotted_string}) is critical", "FAIL"))
    return issues

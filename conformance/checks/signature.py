"""S/MIME signature, signer certificate, trust and the providers index.

SIG-01..12, SIG-15, SIG-19, RIC-05, RIC-06, IDX-10, IDX-14, ANO-12 and decision D16. Without a
configured CA, CRL or index the trust checks are SKIP, never FAIL; the signature value and the
content digest are always verified.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..pec import trust
from ..pec.constants import Kind
from ..pec.index import certificate_hash
from ..pec.parse import ParsedMessage
from ..pec.smime import PROTOCOLS, normalise_micalg
from .findings import ValidationContext, check, errored, failed, info, passed, skipped, warned

_STRONG = {"sha256", "sha384", "sha512"}
# Decision D32: certificates whose validity began before this instant (the DigitPA era) are judged against
# the legacy profile: RSA 1024, keyUsage not critical and basicConstraints present are WARN, not FAIL.
LEGACY_PROFILE_UNTIL = datetime(2017, 1, 1, tzinfo=UTC)


_PER_CERTIFICATE: dict[tuple[int, object], tuple[object, object]] = {}


def _per_certificate(cert, what, compute):
    """What depends on a certificate alone, computed once per certificate object (the CMS reader hands out
    one object per distinct certificate, so a provider's messages share it); bounded."""
    key = (id(cert), what)
    entry = _PER_CERTIFICATE.get(key)
    if entry is None or entry[0] is not cert:
        if len(_PER_CERTIFICATE) > 1024:
            _PER_CERTIFICATE.clear()
        entry = _PER_CERTIFICATE[key] = (cert, compute())
    return entry[1]


def _legacy_deviation(requirement: str, message: str, cert) -> bool:
    if requirement == "SIG-04":
        key = cert.public_key()
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 1024 and message.startswith("RSA key of")
    if requirement == "SIG-07":
        return message == "keyUsage is not critical"
    return requirement == "SIG-11" and message.startswith("basicConstraints present")


def _pec(msg: ParsedMessage) -> bool:
    return msg.kind not in (Kind.ORDINARY, Kind.UNKNOWN)


def _req(msg: ParsedMessage) -> tuple[str, ...]:
    return ("SIG-01", "ANO-12") if msg.kind is Kind.BUSTA_ANOMALIA else ("SIG-01",)


@check("signature.present", ["SIG-01", "ANO-12", "SIG-19"], needs_body=False)
def check_present(msg: ParsedMessage, ctx: ValidationContext):
    """Every envelope and notice is an S/MIME multipart/signed with a detached PKCS#7 signature."""
    if not _pec(msg) and msg.signed is None:
        return
    if msg.signed is None:
        yield failed(_req(msg), "not an S/MIME multipart/signed message", expected="multipart/signed",
                     actual=msg.root.content_type if msg.root else "unparsed")
        return
    protocol = (msg.signed.protocol or "").lower()
    if protocol not in PROTOCOLS:
        yield failed(("SIG-01", "SIG-19"), "multipart/signed protocol is not PKCS#7",
                     expected=" | ".join(PROTOCOLS), actual=protocol or "missing", decision="D16")
    elif protocol == PROTOCOLS[1]:
        yield passed(("SIG-01", "SIG-19"), "legacy x-pkcs7-signature protocol, accepted", decision="D16")
    else:
        yield passed(("SIG-01", "SIG-19"), "multipart/signed with application/pkcs7-signature")
    if msg.signed.signature_error:
        yield failed(_req(msg), msg.signed.signature_error)
    if msg.root is not None and not msg.root.closed:
        yield failed(_req(msg), "multipart/signed has no closing boundary (truncated message?)",
                     expected="--boundary-- after the signature part", actual="missing")


@check("signature.cms", ["SIG-01", "SIG-02", "RIC-06", "ANO-12"], needs_body=False)
def check_cms(msg: ParsedMessage, ctx: ValidationContext):
    """The detached signature verifies over the exact signed bytes and the content digest matches."""
    if msg.signature is None or not _pec(msg):
        return
    v = msg.signature.verification
    req = _req(msg)
    if not v.structure_ok:
        yield failed(req, "the .p7s is not a readable CMS SignedData", actual="; ".join(v.errors) or "unreadable")
        return
    if v.signer_certificate is None:
        yield failed("SIG-02", "the signer's certificate is not inside the CMS structure",
                     expected="signer certificate in SignedData.certificates", actual="not found")
    else:
        yield passed("SIG-02", "signer certificate included")
    if v.encapsulated_content is not None:
        yield failed(req, "the signature embeds the content (attached SignedData) inside multipart/signed; a "
                          "detached signature is required", expected="SignedData without eContent",
                     actual=f"eContent of {len(v.encapsulated_content)} bytes")
    sig = msg.signature
    if sig.bare_lf and (sig.captured or not sig.all_lf_file):
        where = "as captured from SMTP" if sig.captured else "in a file with CRLF line ends"
        yield failed(req, f"the signed content holds bare LF line ends {where}: not the canonical CRLF form "
                          "(RFC 5751 section 3.1.1)", expected="CRLF line ends only", actual="bare LF",
                     decision="D35")
    if v.content_digest_matches is False:
        yield failed((*req, "RIC-06"), "content digest mismatch: the signed part changed after signing",
                     expected="messageDigest of the signed bytes", actual="; ".join(v.errors) or "mismatch")
    elif v.signature_valid is False:
        yield failed((*req, "RIC-06"), "signature value does not verify with the signer's key",
                     actual="; ".join(v.errors) or "invalid")
    elif v.signature_valid is None:
        yield errored(req, "signature could not be checked", actual="; ".join(v.errors) or "unsupported")
    else:
        yield passed(req, "signature and content digest verify")
        if msg.signature.canonicalised:
            yield info("SIG-01", "stored with LF line ends (converted on storage): verified in canonical CRLF form",
                       decision="D35")


@check("signature.algorithms", ["SIG-19", "SIG-17"], needs_body=False)
def check_algorithms(msg: ParsedMessage, ctx: ValidationContext):
    """micalg tells the digest actually used; SHA-1 is legacy (WARN) under decision D16."""
    if msg.signature is None or not msg.signature.verification.structure_ok:
        return
    v = msg.signature.verification
    micalg = normalise_micalg(msg.signed.micalg)
    if micalg is None:
        yield failed("SIG-19", "micalg missing or unknown", expected=v.digest_algorithm,
                     actual=msg.signed.micalg or "missing", decision="D16")
    elif micalg != v.digest_algorithm:
        yield failed("SIG-19", "micalg disagrees with the digest actually used", expected=v.digest_algorithm,
                     actual=msg.signed.micalg, decision="D16")
    else:
        yield passed("SIG-19", f"micalg {msg.signed.micalg} agrees with the digest", decision="D16")
    if v.digest_algorithm == "sha1":
        yield warned("SIG-17", "SHA-1 digest: legacy (RFC 2633 via DM art. 6), allowed with a warning",
                     expected="sha256 or stronger", actual="sha1", decision="D16")
    elif v.digest_algorithm not in _STRONG:
        yield failed("SIG-17", "digest algorithm is neither SHA-2 nor legacy SHA-1", actual=v.digest_algorithm,
                     decision="D16")
    else:
        yield passed("SIG-17", f"digest {v.digest_algorithm}", decision="D16")


def _record_for(msg: ParsedMessage, ctx: ValidationContext):
    cert = msg.signature.verification.signer_certificate if msg.signature else None
    if cert is None or ctx.index is None:
        return cert, []
    index = ctx.index
    found = _per_certificate(cert, ("records", id(index)), lambda: (index, index.records_for_certificate(_der(cert))))
    if found[0] is not index:  # another index object now holds that id: ask it
        found = (index, index.records_for_certificate(_der(cert)))
    return cert, found[1]


def _der(cert) -> bytes:
    return _per_certificate(cert, "der", lambda: cert.public_bytes(serialization.Encoding.DER))


@check("signature.from-certificate", ["SIG-03"], needs_body=False)
def check_from_certificate(msg: ParsedMessage, ctx: ValidationContext):
    """The From address is the e-mail address of the signing certificate."""
    cert = msg.signature.verification.signer_certificate if msg.signature else None
    if cert is None or not _pec(msg):
        return
    address = msg.address("from")
    emails = [e.lower() for e in _per_certificate(cert, "emails", lambda: trust.certificate_emails(cert))]
    if address not in emails:
        yield failed("SIG-03", "From address is not the certificate's e-mail address",
                     expected=" | ".join(emails) or "an rfc822Name in the certificate", actual=address)
    else:
        yield passed("SIG-03", "From matches the certificate")


@check("signature.certificate-profile",
       ["SIG-03", "SIG-04", "SIG-05", "SIG-06", "SIG-07", "SIG-08", "SIG-09", "SIG-10", "SIG-11", "SIG-12"],
       needs_body=False)
def check_certificate_profile(msg: ParsedMessage, ctx: ValidationContext):
    """The signer certificate follows the provider profile of RFC 6109 section 5.5."""
    cert, records = _record_for(msg, ctx)
    if cert is None or not _pec(msg):
        return
    name = records[0].provider_name if records else None
    issues = _per_certificate(cert, ("profile", name),
                              lambda: trust.certificate_profile_issues(cert, provider_name=name))
    legacy = cert.not_valid_before_utc < LEGACY_PROFILE_UNTIL
    failing, softened = False, set()
    for issue in issues:
        if issue.severity == "FAIL" and legacy and _legacy_deviation(issue.requirement, issue.message, cert):
            softened.add(issue.requirement)
            yield warned(issue.requirement, f"{issue.message} (DigitPA-era certificate, valid from "
                                            f"{cert.not_valid_before_utc.date()}: legacy profile)", decision="D32")
            continue
        failing = failing or issue.severity == "FAIL"
        maker = failed if issue.severity == "FAIL" else warned
        # From 2017 on the three legacy deviations FAIL in full; the finding names D32 so that is clear.
        cite = issue.severity == "FAIL" and _legacy_deviation(issue.requirement, issue.message, cert)
        yield maker(issue.requirement, issue.message, decision="D32" if cite else None)
    if not failing:
        judged = tuple(r for r in ("SIG-04", "SIG-06", "SIG-07", "SIG-08", "SIG-09", "SIG-10", "SIG-11", "SIG-12")
                       if r not in softened)
        if name is not None:
            judged = (*judged, "SIG-05")
        yield passed(judged, "certificate follows the provider profile"
                     + (" (legacy profile of decision D32 for the deviations warned above)" if softened else "")
                     + (f" (provider name {name!r} in the subject)" if name else ""))
    if name is None:
        yield skipped("SIG-05", "provider name unknown without a providers index")


@check("signature.validity", ["RIC-06"], needs_body=False)
def check_validity(msg: ParsedMessage, ctx: ValidationContext):
    """The signer certificate was valid at signing time (or now, when the signature has no time)."""
    v = msg.signature.verification if msg.signature else None
    if v is None or v.signer_certificate is None:
        return
    at = v.signing_time or ctx.now or datetime.now(UTC)
    cert = v.signer_certificate
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    when = "signing time" if v.signing_time else "validation time"
    if at < before:
        yield failed("RIC-06", f"certificate not yet valid at {when}", expected=f"from {before.isoformat()}",
                     actual=at.isoformat())
    elif at > after:
        yield failed("RIC-06", f"certificate expired at {when}", expected=f"until {after.isoformat()}",
                     actual=at.isoformat())
    else:
        yield passed("RIC-06", f"certificate valid at {when}")


@check("signature.trust", ["RIC-06"], needs_body=False)
def check_trust(msg: ParsedMessage, ctx: ValidationContext):
    """The signer chains to a configured CA and is not revoked by a configured CRL."""
    v = msg.signature.verification if msg.signature else None
    if v is None or v.signer_certificate is None:
        return
    if not ctx.ca_certificates:
        yield skipped("RIC-06", "no CA configured: chain not checked")
        return
    at = v.signing_time or ctx.now or datetime.now(UTC)
    result = trust.evaluate_trust(v.signer_certificate, at=at, ca_certificates=ctx.ca_certificates,
                                  crls=ctx.crls)
    if result.chain_valid is False:
        yield failed("RIC-06", "certificate does not chain to a configured CA", actual="; ".join(result.reasons))
    elif result.chain_valid is None:  # undetermined: no PASS for a chain that was not seen
        yield info("RIC-06", "chain to a configured CA not determined", actual="; ".join(result.reasons))
    else:
        yield passed("RIC-06", "certificate chains to a configured CA")
    if result.revoked:
        yield failed("RIC-06", "certificate revoked by the configured CRL", actual="; ".join(result.reasons))
    elif result.revoked is None:
        yield skipped("RIC-06", "no CRL configured: revocation not checked")
    else:
        yield passed("RIC-06", "certificate not revoked")


@check("signature.index", ["RIC-05", "IDX-10", "SIG-05", "SIG-15", "IDX-14"], needs_body=False)
def check_index(msg: ParsedMessage, ctx: ValidationContext):
    """The signer is a provider of the index, and the From domain is one of its managed domains."""
    cert, records = _record_for(msg, ctx)
    if cert is None:
        return
    if ctx.index is None:
        yield skipped(("RIC-05", "IDX-10"), "no providers index configured: origin not checked")
        return
    der = _der(cert)
    if not records:
        yield failed(("RIC-05", "IDX-10"), "the signer certificate is not in the providers index",
                     expected="a providerCertificate / providerCertificateHash of the index",
                     actual=certificate_hash(der))
        return
    yield passed(("RIC-05", "IDX-10"), f"signer is {records[0].provider_name} in the index", decision="D4")
    domain = msg.address("from").rpartition("@")[2]
    managed = {d.lower() for r in records for d in r.managed_domains}
    if domain not in managed:
        yield warned(("SIG-15", "IDX-14"), "From domain is not a managed domain of the signer's record",
                     expected=" | ".join(sorted(managed)), actual=domain)
    else:
        yield passed("SIG-15", "From domain managed by the signer")

"""Certificate trust (chain, CRL, validity) and the RFC 6109 §5.5 profile checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.pec import pki
from conformance.pec.trust import (
    ProfileIssue,
    certificate_emails,
    certificate_profile_issues,
    evaluate_trust,
)

NOW = datetime.now(UTC)
NAME = "AcmePEC S.p.A"
ADDRESS = "posta-certificata@acmepec.test"


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    # Issued two years ago so that "valid at the signing time" checks in the past hold for the CA too.
    return pki.generate_ca(now=NOW - timedelta(days=730))


@pytest.fixture(scope="module")
def foreign_ca() -> pki.CertificateAuthority:
    # Same name as the real CA: only the signature tells them apart.
    return pki.generate_ca()


@pytest.fixture(scope="module")
def shared_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def good(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return pki.issue_provider_certificate(ca, NAME, ADDRESS, key=shared_key)[1]


def _issue(ca: pki.CertificateAuthority, key: object, **kwargs: object) -> x509.Certificate:
    return pki.issue_provider_certificate(ca, NAME, ADDRESS, key=key, **kwargs)[1]


def _requirements(issues: list[ProfileIssue], severity: str | None = None) -> set[str]:
    return {i.requirement for i in issues if severity is None or i.severity == severity}


def test_conformant_certificate(ca: pki.CertificateAuthority, good: x509.Certificate) -> None:
    assert certificate_profile_issues(good, provider_name=NAME, service_address=ADDRESS) == []
    assert certificate_profile_issues(good, service_address=ADDRESS.upper()) == []  # case-insensitive
    assert certificate_emails(good) == [ADDRESS]
    subject = good.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == NAME
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Posta Certificata"
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "IT"
    eku = good.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku.value and not eku.critical

    result = evaluate_trust(good, at=NOW, ca_certificates=[ca.certificate], crls=[pki.build_crl(ca, [])])
    assert result.chain_valid is True and result.revoked is False and result.time_valid
    assert result.ok and result.reasons == []


def test_no_ca_no_crl(good: x509.Certificate) -> None:
    result = evaluate_trust(good, at=NOW)
    assert result.chain_valid is None and result.revoked is None and result.time_valid


def test_expired_and_not_yet_valid(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    expired = _issue(ca, shared_key, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    result = evaluate_trust(expired, at=NOW, ca_certificates=[ca.certificate])
    assert result.time_valid is False and result.chain_valid is True and not result.ok
    assert any("expired" in r for r in result.reasons)
    # Valid at the signing time even though expired now.
    assert evaluate_trust(expired, at=NOW - timedelta(days=100), ca_certificates=[ca.certificate]).ok

    future = _issue(ca, shared_key, not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=30))
    result = evaluate_trust(future, at=NOW, ca_certificates=[ca.certificate])
    assert result.time_valid is False
    assert any("not yet valid" in r for r in result.reasons)


def test_foreign_ca(
    ca: pki.CertificateAuthority, foreign_ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey
) -> None:
    stranger = _issue(foreign_ca, shared_key)
    result = evaluate_trust(stranger, at=NOW, ca_certificates=[ca.certificate])
    assert result.chain_valid is False and not result.ok
    assert any("does not verify" in r for r in result.reasons)

    other_name = pki.generate_ca("Some Other CA")
    result = evaluate_trust(_issue(other_name, shared_key), at=NOW, ca_certificates=[ca.certificate])
    assert result.chain_valid is False
    assert any("not a configured CA" in r for r in result.reasons)


def test_crl_checks(
    ca: pki.CertificateAuthority, foreign_ca: pki.CertificateAuthority, good: x509.Certificate
) -> None:
    revoked_at = NOW - timedelta(hours=1)
    crl = pki.build_crl(ca, [(good.serial_number, revoked_at)], now=NOW)
    result = evaluate_trust(good, at=NOW, ca_certificates=[ca.certificate], crls=[crl])
    assert result.revoked is True and not result.ok

    # A CRL under the same issuer name but signed by another key is ignored.
    forged = pki.build_crl(foreign_ca, [(good.serial_number, revoked_at)], now=NOW)
    result = evaluate_trust(good, at=NOW, ca_certificates=[ca.certificate], crls=[forged])
    assert result.revoked is None
    assert any("CRL signature" in r for r in result.reasons)

    # Without the issuer certificate the CRL cannot be trusted.
    assert evaluate_trust(good, at=NOW, crls=[crl]).revoked is None

    stale = pki.build_crl(ca, [], now=NOW - timedelta(days=30), next_update_days=7)
    result = evaluate_trust(good, at=NOW, ca_certificates=[ca.certificate], crls=[stale])
    assert result.revoked is False and any("stale" in r for r in result.reasons)


def test_two_level_chain(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PEC Intermediate CA")])
    inter_ski = x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key())
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(inter_name)
        .issuer_name(ca.certificate.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(inter_ski, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    intermediate = pki.CertificateAuthority(key=inter_key, certificate=inter_cert, name="PEC Intermediate CA")
    leaf = _issue(intermediate, shared_key)
    assert evaluate_trust(leaf, at=NOW, ca_certificates=[ca.certificate, inter_cert]).chain_valid is True
    assert evaluate_trust(leaf, at=NOW, ca_certificates=[ca.certificate]).chain_valid is False
    # An expired intermediate breaks the path.
    assert evaluate_trust(
        leaf, at=NOW + timedelta(days=200), ca_certificates=[ca.certificate, inter_cert]
    ).chain_valid is False


def test_sha1_certificate_still_verifies(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    legacy = _issue(ca, shared_key, hash_algorithm="sha1")
    assert legacy.signature_hash_algorithm is not None and legacy.signature_hash_algorithm.name == "sha1"
    assert evaluate_trust(legacy, at=NOW, ca_certificates=[ca.certificate]).chain_valid is True
    issues = certificate_profile_issues(legacy)
    assert _requirements(issues) == {"SIG-04"} and _requirements(issues, "FAIL") == set()


def test_rsa_1024(ca: pki.CertificateAuthority) -> None:
    weak = pki.issue_provider_certificate(ca, NAME, ADDRESS, key_size=1024)[1]
    issues = certificate_profile_issues(weak, provider_name=NAME, service_address=ADDRESS)
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-04", "FAIL")]


def test_basic_constraints_present(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    issues = certificate_profile_issues(_issue(ca, shared_key, basic_constraints=True))
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-11", "FAIL")]


def test_critical_extra_extension(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    issues = certificate_profile_issues(_issue(ca, shared_key, critical_extra_extension=True))
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-12", "FAIL")]


def test_email_in_subject(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    issues = certificate_profile_issues(_issue(ca, shared_key, email_in_subject=True))
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-06", "WARN")]


def test_provider_name_and_service_address(good: x509.Certificate) -> None:
    issues = certificate_profile_issues(good, provider_name="OtherPEC S.p.A")
    assert _requirements(issues) == {"SIG-05"} and issues[0].severity == "FAIL"
    issues = certificate_profile_issues(good, provider_name=NAME.upper())
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-05", "WARN")]
    issues = certificate_profile_issues(good, service_address="posta-certificata@other.test")
    assert [(i.requirement, i.severity) for i in issues] == [("SIG-03", "FAIL")]


def _bare_builder(ca: pki.CertificateAuthority, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NAME)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
    )


def test_missing_san(ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey) -> None:
    ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        _bare_builder(ca, shared_key)
        .add_extension(ku, critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(shared_key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    issues = certificate_profile_issues(cert, service_address=ADDRESS)
    assert _requirements(issues, "FAIL") == {"SIG-06", "SIG-10", "SIG-03"}
    assert certificate_emails(cert) == []


def test_missing_and_wrongly_critical_extensions(
    ca: pki.CertificateAuthority, shared_key: rsa.RSAPrivateKey
) -> None:
    bare = _bare_builder(ca, shared_key).sign(ca.key, hashes.SHA256())
    assert _requirements(certificate_profile_issues(bare), "FAIL") == {
        "SIG-06", "SIG-07", "SIG-08", "SIG-09", "SIG-10"
    }  # fmt: skip

    ku = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
    wrong = (
        _bare_builder(ca, shared_key)
        .add_extension(ku, critical=False)  # not critical and no digitalSignature
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(shared_key.public_key()), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(ADDRESS)]), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    issues = certificate_profile_issues(wrong, service_address=ADDRESS)
    assert _requirements(issues) == {"SIG-07", "SIG-08", "SIG-09", "SIG-10"}
    assert len([i for i in issues if i.requirement == "SIG-07"]) == 2

"""CMS SignedData: sign/verify round trips, tampering, interoperability, hostile input."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import pkcs7

from conformance.pec import pki
from conformance.pec.cms import MAX_CMS_SIZE, CmsVerification, sign_attached, sign_detached, verify_cms

CONTENT = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nMessaggio di posta certificata\r\n"


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.generate_ca("CMS Test CA")


@pytest.fixture(scope="module")
def provider(ca: pki.CertificateAuthority) -> pki.ProviderCredentials:
    return pki.make_provider(ca, "AcmePEC S.p.A", ["acmepec.test"])


@pytest.fixture(scope="module")
def signature(provider: pki.ProviderCredentials) -> bytes:
    return sign_detached(CONTENT, provider.key, provider.certificate)


@pytest.mark.parametrize("digest", ["sha256", "sha1", "sha384", "sha512"])
def test_detached_round_trip(provider: pki.ProviderCredentials, digest: str) -> None:
    when = datetime(2024, 12, 3, 10, 15, 30, tzinfo=UTC)
    der = sign_detached(CONTENT, provider.key, provider.certificate, digest=digest, signing_time=when)
    result = verify_cms(der, CONTENT)
    assert result.ok, result.errors
    assert result.errors == []
    assert result.structure_ok and result.signature_valid and result.content_digest_matches
    assert result.digest_algorithm == digest
    assert result.signature_algorithm == "rsassa_pkcs1v15"
    assert result.signing_time == when
    assert result.signer_certificate == provider.certificate
    assert result.encapsulated_content is None


def test_signs_exact_bytes_without_line_end_rewriting(provider: pki.ProviderCredentials) -> None:
    lf_only = b"line one\nline two\n"
    der = sign_detached(lf_only, provider.key, provider.certificate)
    assert verify_cms(der, lf_only).ok
    crlf = verify_cms(der, lf_only.replace(b"\n", b"\r\n"))
    assert crlf.content_digest_matches is False and not crlf.ok


def test_flipped_content_byte(signature: bytes) -> None:
    altered = bytearray(CONTENT)
    altered[10] ^= 0x01
    result = verify_cms(signature, bytes(altered))
    assert result.content_digest_matches is False
    assert result.signature_valid is True  # the signed attributes themselves are intact
    assert not result.ok
    assert "content digest mismatch" in result.errors


def test_tampered_signature_value(signature: bytes) -> None:
    # The signature value is the last field of the last SignerInfo: the final DER byte.
    tampered = bytearray(signature)
    tampered[-1] ^= 0xFF
    result = verify_cms(bytes(tampered), CONTENT)
    assert result.structure_ok
    assert result.content_digest_matches is True
    assert result.signature_valid is False
    assert not result.ok


def test_detached_without_content_is_not_ok(signature: bytes) -> None:
    result = verify_cms(signature)
    assert not result.ok
    assert result.content_digest_matches is False
    assert result.signer_certificate is not None


def test_signer_found_by_issuer_and_serial_among_extra_certificates(
    ca: pki.CertificateAuthority, provider: pki.ProviderCredentials
) -> None:
    other = pki.make_provider(ca, "ServiziPEC S.p.A", ["servizipec.test"], key=provider.key)
    der = sign_detached(
        CONTENT,
        provider.key,
        provider.certificate,
        extra_certificates=[ca.certificate, other.certificate],
    )
    result = verify_cms(der, CONTENT)
    assert result.ok, result.errors
    assert len(result.certificates) == 3
    # Same key, same issuer: only issuer+serial tells the two certificates apart.
    assert result.signer_certificate == provider.certificate
    sid = asn1_cms.ContentInfo.load(der)["content"]["signer_infos"][0]["sid"]
    assert sid.name == "issuer_and_serial_number"


def test_signer_found_by_subject_key_identifier(provider: pki.ProviderCredentials, signature: bytes) -> None:
    info = asn1_cms.ContentInfo.load(signature)
    signer_info = info["content"]["signer_infos"][0]
    ski = provider.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # The sid is outside the signed attributes, so swapping it keeps the signature valid.
    signer_info["sid"] = asn1_cms.SignerIdentifier({"subject_key_identifier": ski})
    signer_info["version"] = "v3"
    info["content"]["version"] = "v3"
    result = verify_cms(info.dump(force=True), CONTENT)
    assert result.ok, result.errors
    assert result.signer_certificate == provider.certificate


def test_cryptography_builder_output_verifies(provider: pki.ProviderCredentials) -> None:
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(CONTENT)
        .add_signer(provider.certificate, provider.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    result = verify_cms(der, CONTENT)
    assert result.ok, result.errors
    assert result.digest_algorithm == "sha256"
    assert result.signer_certificate == provider.certificate
    assert result.signing_time is not None
    assert not verify_cms(der, CONTENT + b"x").ok


def test_cryptography_pss_and_no_attributes(provider: pki.ProviderCredentials) -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(CONTENT)
        .add_signer(provider.certificate, provider.key, hashes.SHA256(), rsa_padding=pss)
        .sign(serialization.Encoding.DER, options)
    )
    result = verify_cms(der, CONTENT)
    assert result.ok, result.errors
    assert result.signature_algorithm == "rsassa_pss"

    bare = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(CONTENT)
        .add_signer(provider.certificate, provider.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [*options, pkcs7.PKCS7Options.NoAttributes])
    )
    result = verify_cms(bare, CONTENT)
    assert result.ok and result.content_digest_matches is None
    bad = verify_cms(bare, CONTENT[:-1])
    assert bad.signature_valid is False and not bad.ok


def test_ecdsa_signer(ca: pki.CertificateAuthority) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key, cert = pki.issue_provider_certificate(ca, "EcPEC", "posta-certificata@ecpec.test", key=ec_key)
    result = verify_cms(sign_detached(CONTENT, key, cert), CONTENT)
    assert result.ok, result.errors
    assert result.signature_algorithm == "ecdsa"


def test_attached_round_trip(provider: pki.ProviderCredentials) -> None:
    payload = b"dn: o=postacert\nobjectClass: top\n"
    der = sign_attached(payload, provider.key, provider.certificate)
    result = verify_cms(der)
    assert result.ok, result.errors
    assert result.encapsulated_content == payload
    # Trailing newline after the DER (seen in stored files) is reported, not fatal.
    trailing = verify_cms(der + b"\n")
    assert trailing.ok and trailing.errors


def test_unknown_digest_refused_when_signing(provider: pki.ProviderCredentials) -> None:
    with pytest.raises(ValueError):
        sign_detached(CONTENT, provider.key, provider.certificate, digest="md5")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x00" * 64,
        b"\x30",
        b"\x30\x84\x7f\xff\xff\xff",  # claims 2 GiB
        b"\x30\x89\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # length of length 9
        b"\x30\x80" + b"\x30\x80" * 5000,  # deep indefinite-length nesting
        b"\x06\x03\x55\x04\x03",  # a bare OID
        b"-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n",
    ],
)
def test_hostile_input_never_raises(data: bytes) -> None:
    result = verify_cms(data, CONTENT)
    assert isinstance(result, CmsVerification)
    assert not result.ok
    assert result.errors


def test_oversized_input_refused() -> None:
    result = verify_cms(b"\x30" + b"\x00" * MAX_CMS_SIZE)
    assert not result.ok and "larger" in result.errors[0]


def test_truncations_and_bit_flips_never_raise(signature: bytes) -> None:
    for cut in range(0, len(signature), 7):
        result = verify_cms(signature[:cut], CONTENT)
        assert not result.ok
    assert any("truncated" in e for e in verify_cms(signature[:200], CONTENT).errors)
    rng = random.Random(6109)
    for _ in range(300):
        mutated = bytearray(signature)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        verify_cms(bytes(mutated), CONTENT)  # must not raise; outcome depends on where it hit

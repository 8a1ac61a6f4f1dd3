"""Test PKI files and the providers index: LDIF round trip, lookups (D4, D21), signed .p7m."""

from __future__ import annotations

import base64
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.pec import cms, index, pki, trust
from conformance.pec.index import IndexFormatError, IndexRecord, ProvidersIndex


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.generate_ca()


@pytest.fixture(scope="module")
def providers(ca: pki.CertificateAuthority) -> list[pki.ProviderCredentials]:
    return [
        pki.make_provider(ca, "AcmePEC S.p.A", ["acmepec.test", "pec.acme.test"]),
        pki.make_provider(
            ca, "Servizi, PEC à Roma", ["servizipec.test"], receipt_mailbox="ricevute-pec@servizipec.test"
        ),
    ]


@pytest.fixture(scope="module")
def index_signer(ca: pki.CertificateAuthority) -> tuple[object, x509.Certificate]:
    return pki.issue_index_signer(ca)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_make_provider_defaults(providers: list[pki.ProviderCredentials]) -> None:
    acme = providers[0]
    assert acme.service_address == "posta-certificata@acmepec.test"
    assert acme.receipt_mailbox == "ricevute@acmepec.test"
    assert acme.domains == ("acmepec.test", "pec.acme.test")
    assert trust.certificate_emails(acme.certificate) == ["posta-certificata@acmepec.test"]
    assert acme.key.public_key().public_numbers().e == 65537


def test_ldif_round_trip(providers: list[pki.ProviderCredentials]) -> None:
    records = index.index_records_from_providers(providers, base_url="https://index.test/pec/")
    data = index.write_ldif(records, root_ldif_url="https://index.test/pec/all.ldif.p7m")
    text = data.decode("utf-8")
    assert text.startswith("dn: o=postacert\n")
    assert "objectClass: LDIFLocationURLObject" in text
    assert "providerCertificate;binary:: " in text
    assert "providerName=AcmePEC S.p.A,o=postacert" in text
    assert "providerName=Servizi\\, PEC à Roma,o=postacert" in text or "dn:: " in text

    parsed = index.parse_ldif(data)
    assert len(parsed.records) == 2  # the root entry is not a provider
    by_name = {r.provider_name: r for r in parsed.records}
    acme, servizi = by_name["AcmePEC S.p.A"], by_name["Servizi, PEC à Roma"]
    assert acme.managed_domains == ("acmepec.test", "pec.acme.test")
    assert acme.mail_receipt == "ricevute@acmepec.test"
    assert acme.certificates == (_der(providers[0].certificate),)
    assert acme.certificate_hashes == (index.certificate_hash(_der(providers[0].certificate)),)
    assert acme.ldif_location_url == "https://index.test/pec/acmepec-s-p-a.ldif.p7m"
    assert acme.provider_unit is None
    assert servizi.mail_receipt == "ricevute-pec@servizipec.test"
    assert servizi.dn == index.provider_dn("Servizi, PEC à Roma")
    assert parsed.records == tuple(records)

    assert parsed.is_pec_domain("ACMEPEC.test") and parsed.is_pec_domain("servizipec.test.")
    assert not parsed.is_pec_domain("example.com")
    assert parsed.record_for_domain("Pec.Acme.Test") == acme
    assert parsed.records_for_certificate(_der(providers[1].certificate)) == [servizi]


def test_upper_case_hash_matches(providers: list[pki.ProviderCredentials]) -> None:
    der = _der(providers[0].certificate)
    record = IndexRecord(
        dn=index.provider_dn("AcmePEC S.p.A"),
        provider_name="AcmePEC S.p.A",
        managed_domains=("acmepec.test",),
        mail_receipt="ricevute@acmepec.test",
        certificates=(der,),
        certificate_hashes=(index.certificate_hash(der).upper(),),
    )
    parsed = index.parse_ldif(index.write_ldif([record]))
    assert parsed.records[0].certificate_hashes[0].isupper()
    assert parsed.records_for_certificate(der) == [parsed.records[0]]
    # A hash-only record (certificate value missing) is still found by its upper-case hash (D4).
    hash_only = ProvidersIndex([replace(record, certificates=())])
    assert len(hash_only.records_for_certificate(der)) == 1
    assert hash_only.records_for_certificate(_der(providers[1].certificate)) == []


def test_secondary_environment_and_d21(providers: list[pki.ProviderCredentials]) -> None:
    acme = providers[0]
    der = _der(acme.certificate)
    main = IndexRecord(
        dn=index.provider_dn("AcmePEC S.p.A"),
        provider_name="AcmePEC S.p.A",
        managed_domains=("acmepec.test",),
        mail_receipt="ricevute@acmepec.test",
        certificates=(der,),
        certificate_hashes=(index.certificate_hash(der),),
        ldif_location_url="https://acmepec.test/index.ldif.p7m",
    )
    secondary = IndexRecord(
        dn=index.provider_dn("AcmePEC S.p.A", "Ambiente PA"),
        provider_name="AcmePEC S.p.A",
        managed_domains=("pa.acmepec.test",),
        mail_receipt="ricevute-pa@acmepec.test",
        certificates=(der,),
        certificate_hashes=(index.certificate_hash(der).upper(),),
        ldif_location_url="https://must-not-be-written.test/",
        provider_unit="Ambiente PA",
        description="Ambiente secondario",
    )
    data = index.write_ldif([main, secondary])
    assert b"providerUnit=Ambiente PA,providerName=AcmePEC S.p.A,o=postacert" in data
    assert b"must-not-be-written" not in data  # §4.5: only the main record carries LDIFLocationURL
    parsed = index.parse_ldif(data)
    assert len(parsed.records_for_certificate(der)) == 2
    second = parsed.records[1]
    assert second.provider_unit == "Ambiente PA" and second.description == "Ambiente secondario"

    assert parsed.receipt_mailbox_for(der, "pa.acmepec.test") == "ricevute-pa@acmepec.test"
    assert parsed.receipt_mailbox_for(der, "PA.AcmePEC.test") == "ricevute-pa@acmepec.test"
    assert parsed.receipt_mailbox_for(der, "acmepec.test") == "ricevute@acmepec.test"
    assert parsed.receipt_mailbox_for(der, "elsewhere.test") == "ricevute@acmepec.test"
    assert parsed.receipt_mailbox_for(der, None) == "ricevute@acmepec.test"
    assert parsed.receipt_mailbox_for(_der(providers[1].certificate), "pa.acmepec.test") is None

    # Only the secondary record holds the certificate: fall back to the provider's main record.
    main_other_cert = replace(main, certificates=(), certificate_hashes=("0" * 40,))
    fallback = ProvidersIndex([main_other_cert, secondary])
    assert fallback.receipt_mailbox_for(der, "elsewhere.test") == "ricevute@acmepec.test"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"just some text\nwithout colons\n",
        b"objectClass: provider\nproviderName: x\n",  # no dn line
        b"dn: not a dn\nproviderName: x\n",
        b"dn: providerName=x,o=postacert\nobjectClass: provider\nproviderName:: !!!notbase64\n",
        # provider entry missing mailReceipt
        b"dn: providerName=x,o=postacert\nobjectClass: provider\nproviderName: x\nmanagedDomains: x.test\n"
        b"providerCertificateHash: " + b"a" * 40 + b"\n",
        # bad hash
        b"dn: providerName=x,o=postacert\nobjectClass: provider\nproviderName: x\nmanagedDomains: x.test\n"
        b"mailReceipt: r@x.test\nproviderCertificateHash: xyz\n",
        # certificate that is not one
        b"dn: providerName=x,o=postacert\nobjectClass: provider\nproviderName: x\nmanagedDomains: x.test\n"
        b"mailReceipt: r@x.test\nproviderCertificate;binary:: " + base64.b64encode(b"\x30\x03\x02\x01\x01") + b"\n",
        # two providerName values (SINGLE-VALUE)
        b"dn: providerName=x,o=postacert\nobjectClass: provider\nproviderName: x\nproviderName: y\n"
        b"managedDomains: x.test\nmailReceipt: r@x.test\nproviderCertificateHash: " + b"a" * 40 + b"\n",
    ],
)
def test_parse_ldif_refuses_malformed(data: bytes) -> None:
    with pytest.raises(IndexFormatError):
        index.parse_ldif(data)


def test_index_format_error_is_value_error() -> None:
    assert issubclass(IndexFormatError, ValueError)
    with pytest.raises(IndexFormatError):
        index.parse_ldif(b"x" * (index.MAX_INDEX_SIZE + 1))


def test_parse_ldif_never_fetches_urls(tmp_path: Path, providers: list[pki.ProviderCredentials]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    der = _der(providers[0].certificate)
    data = (
        b"version: 1\n\n"
        b"# a comment\n"
        b"dn: providerName=AcmePEC S.p.A,o=postacert\n"
        b"objectclass: top\nOBJECTCLASS: provider\n"
        b"providername: AcmePEC S.p.A\n"
        b"MANAGEDDOMAINS: acmepec.test\n"
        b"mailreceipt: ricevute@acmepec.test\n"
        b"providerCertificateHash: " + index.certificate_hash(der).upper().encode() + b"\n"
        b"providerCertificate:: " + base64.b64encode(der) + b"\n"
        b"description:< file:///etc/passwd\n"
        b"LDIFLocationURL:< " + secret.as_uri().encode() + b"\n"
        b"\n"
        b"dn: cn=someone,o=postacert\nobjectClass: person\ncn: someone\n"
    )
    parsed = index.parse_ldif(data)
    assert len(parsed.records) == 1
    record = parsed.records[0]
    assert record.description is None
    assert record.ldif_location_url is None
    assert "root:" not in repr(record) and "TOP-SECRET" not in repr(record)
    assert record.certificates == (der,)  # 'providerCertificate' without ';binary' accepted


def test_signed_index(
    providers: list[pki.ProviderCredentials],
    index_signer: tuple[object, x509.Certificate],
    ca: pki.CertificateAuthority,
) -> None:
    key, cert = index_signer
    ldif_bytes = index.write_ldif(index.index_records_from_providers(providers))
    p7m = index.sign_index(ldif_bytes, key, cert)
    assert p7m[:1] == b"\x30"

    signed = index.open_signed_index(p7m, trusted_signer=cert)
    assert signed.ldif == ldif_bytes
    assert signed.verification.ok and signed.signer_trusted is True
    assert index.open_signed_index(p7m).signer_trusted is None

    other_key, other_cert = pki.issue_index_signer(ca, "Another Index Signer")
    assert index.open_signed_index(p7m, trusted_signer=other_cert).signer_trusted is False
    forged = index.sign_index(ldif_bytes, other_key, other_cert)
    assert index.open_signed_index(forged, trusted_signer=cert).signer_trusted is False

    pem = b"-----BEGIN PKCS7-----\n" + base64.encodebytes(p7m) + b"-----END PKCS7-----\n"
    assert index.open_signed_index(pem, trusted_signer=cert).signer_trusted is True
    assert index.open_signed_index(base64.encodebytes(p7m), trusted_signer=cert).signer_trusted is True

    # Tampered content: the LDIF is still returned but the signature is not trusted.
    pos = p7m.find(b"ricevute@acmepec.test")
    tampered = bytearray(p7m)
    tampered[pos] ^= 0x20
    opened = index.open_signed_index(bytes(tampered), trusted_signer=cert)
    assert opened.verification.content_digest_matches is False
    assert opened.signer_trusted is False

    with pytest.raises(IndexFormatError):
        index.open_signed_index(b"\x30\x03\x02\x01\x01")
    detached = cms.sign_detached(ldif_bytes, key, cert)
    with pytest.raises(IndexFormatError):
        index.open_signed_index(detached)

    parsed, signed_info = index.load_index(p7m, trusted_signer=cert)
    assert len(parsed.records) == 2 and signed_info is not None and signed_info.signer_trusted
    parsed, signed_info = index.load_index(ldif_bytes)
    assert len(parsed.records) == 2 and signed_info is None
    parsed, signed_info = index.load_index(pem, trusted_signer=cert)
    assert signed_info is not None and signed_info.signer_trusted


def test_write_and_load_pki_directory(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    specs = [
        pki.ProviderSpec("Counterpart PEC", ("counterpart.test", "alt.counterpart.test")),
        pki.ProviderSpec("Target PEC", ("target.test",), receipt_mailbox="ricevute@target.test"),
    ]
    layout = pki.write_pki_directory(tmp_path, specs, now=now)
    for rel in (
        "ca/ca.pem", "ca/ca.key.pem", "ca/crl.pem", "ca/serials.json",
        "providers/counterpart-pec/key.pem", "providers/counterpart-pec/cert.pem",
        "providers/target-pec/key.pem", "providers/target-pec/cert.pem",
        "index/index-signer.pem", "index/index-signer.key.pem",
        "index/providers.ldif", "index/providers.ldif.p7m", "pki.json",
    ):  # fmt: skip
        assert (tmp_path / rel).is_file(), rel
    for rel in ("ca/ca.key.pem", "index/index-signer.key.pem", "providers/target-pec/key.pem"):
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == 0o600

    manifest = json.loads((tmp_path / "pki.json").read_text())
    assert [p["name"] for p in manifest["providers"]] == ["Counterpart PEC", "Target PEC"]
    assert manifest["providers"][0]["service_address"] == "posta-certificata@counterpart.test"
    assert manifest["providers"][0]["receipt_mailbox"] == "ricevute@counterpart.test"
    assert manifest["providers"][1]["domains"] == ["target.test"]
    serials = json.loads((tmp_path / "ca/serials.json").read_text())
    assert str(layout.providers[0].certificate.serial_number) in serials
    assert len(list(layout.crl)) == 0

    loaded = pki.load_pki_directory(tmp_path)
    assert loaded.ca.certificate == layout.ca.certificate
    assert [p.certificate for p in loaded.providers] == [p.certificate for p in layout.providers]
    assert loaded.provider("Target PEC").receipt_mailbox == "ricevute@target.test"
    assert loaded.signed_index is not None and loaded.signed_index.signer_trusted is True
    assert loaded.index.records == layout.index.records
    counterpart = loaded.providers[0]
    assert loaded.index.receipt_mailbox_for(counterpart.certificate_der(), "alt.counterpart.test") == (
        "ricevute@counterpart.test"
    )
    for provider in loaded.providers:
        assert trust.certificate_profile_issues(
            provider.certificate, provider_name=provider.provider_name, service_address=provider.service_address
        ) == []
        result = trust.evaluate_trust(
            provider.certificate, at=now, ca_certificates=[loaded.ca.certificate], crls=[loaded.crl]
        )
        assert result.chain_valid and result.revoked is False and result.time_valid, result.reasons

    # Revocation by certificate path, then by serial; the CRL is re-signed by the CA.
    target_cert_path = tmp_path / "providers/target-pec/cert.pem"
    later = now + timedelta(minutes=1)
    serial = pki.revoke_in_directory(tmp_path, Path("providers/target-pec/cert.pem"), now=later)
    assert serial == loaded.provider("Target PEC").certificate.serial_number
    assert pki.revoke_in_directory(tmp_path, target_cert_path, now=later) == serial  # idempotent
    crl = x509.load_pem_x509_crl((tmp_path / "ca/crl.pem").read_bytes())
    assert len(list(crl)) == 1
    reloaded = pki.load_pki_directory(tmp_path)
    target = reloaded.provider("Target PEC")
    result = trust.evaluate_trust(
        target.certificate, at=later, ca_certificates=[reloaded.ca.certificate], crls=[reloaded.crl]
    )
    assert result.revoked is True and result.chain_valid is True
    assert any("revoked" in r for r in result.reasons)
    other = trust.evaluate_trust(
        reloaded.providers[0].certificate, at=later, ca_certificates=[reloaded.ca.certificate], crls=[reloaded.crl]
    )
    assert other.revoked is False

    extra_serial = pki.revoke_in_directory(tmp_path, 12345, now=later)
    assert extra_serial == 12345
    assert len(list(x509.load_pem_x509_crl((tmp_path / "ca/crl.pem").read_bytes()))) == 2


def test_load_pki_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pki.load_pki_directory(tmp_path)

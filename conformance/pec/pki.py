"""Test PKI for the suite: a CA, provider certificates per RFC 6109 §5.5, CRLs, the index signer.

Pure functions except :func:`write_pki_directory`, :func:`revoke_in_directory` and
:func:`load_pki_directory`, the only helpers that touch files (the ``pki init`` command uses them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import algos as asn1_algos
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import index as pec_index

__all__ = [
    "CertificateAuthority",
    "PkiLayout",
    "ProviderCredentials",
    "ProviderSpec",
    "build_crl",
    "generate_ca",
    "issue_counterpart_forgery_certificates",
    "issue_index_signer",
    "issue_provider_certificate",
    "issue_tls_server_certificate",
    "load_forgery_material",
    "load_pki_directory",
    "make_provider",
    "private_key_pem",
    "revoke_in_directory",
    "write_forgery_material",
    "write_pki_directory",
]

# Private OID used for the deliberately critical "extra" extension: AgID-like certificate policy.
TEST_POLICY_OID = x509.ObjectIdentifier("1.3.76.16.3.1.1")

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)


def _new_rsa_key(key_size: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def private_key_pem(key: Any) -> bytes:
    """Unencrypted PKCS#8 PEM (test PKI only)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class CertificateAuthority:
    key: Any
    certificate: x509.Certificate
    name: str

    def pem(self) -> bytes:
        return _certificate_pem(self.certificate)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


@dataclass
class ProviderCredentials:
    provider_name: str
    domains: tuple[str, ...]
    service_address: str
    receipt_mailbox: str
    key: Any
    certificate: x509.Certificate
    ca_certificate: x509.Certificate

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    domains: tuple[str, ...]
    receipt_mailbox: str | None = None
    # The organisation named in the certificate's subject when it is not `name` (a profile defect, SIG-05).
    certificate_organization: str | None = None

    def __post_init__(self) -> None:
        # Accept any sequence (or a bare string) for domains; store a tuple.
        domains = (self.domains,) if isinstance(self.domains, str) else tuple(self.domains)
        if not domains:
            raise ValueError(f"provider {self.name!r} needs at least one domain")
        object.__setattr__(self, "domains", domains)


def _sign_hash(key: Any, hash_algorithm: str) -> hashes.HashAlgorithm | None:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return _HASHES[hash_algorithm]()
    return None  # Ed25519/Ed448 sign without a separate hash


def _sign_certificate(builder: x509.CertificateBuilder, ca_key: Any, hash_algorithm: str) -> x509.Certificate:
    hash_algorithm = hash_algorithm.lower().replace("-", "")
    if hash_algorithm not in _HASHES:
        raise ValueError(f"unsupported hash {hash_algorithm!r}; choose one of {sorted(_HASHES)}")
    if hash_algorithm != "sha1":
        return builder.sign(ca_key, _sign_hash(ca_key, hash_algorithm))
    # cryptography refuses to sign with SHA-1: build with SHA-256, then re-sign the TBS with SHA-1.
    draft = builder.sign(ca_key, _sign_hash(ca_key, "sha256"))
    return _resign_sha1(draft, ca_key)


def _resign_sha1(certificate: x509.Certificate, ca_key: Any) -> x509.Certificate:
    if isinstance(ca_key, rsa.RSAPrivateKey):
        algorithm = "sha1_rsa"
    elif isinstance(ca_key, ec.EllipticCurvePrivateKey):
        algorithm = "sha1_ecdsa"
    else:
        raise ValueError("SHA-1 certificates need an RSA or EC CA key")
    cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    tbs = cert["tbs_certificate"]
    tbs["signature"] = asn1_algos.SignedDigestAlgorithm({"algorithm": algorithm})
    tbs_der = tbs.dump(force=True)
    if isinstance(ca_key, rsa.RSAPrivateKey):
        signature = ca_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())
    else:
        signature = ca_key.sign(tbs_der, ec.ECDSA(hashes.SHA1()))
    rebuilt = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": algorithm}),
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(rebuilt.dump(force=True))


def generate_ca(
    name: str = "PEC Conformance Test CA",
    *,
    now: datetime | None = None,
    key_size: int = 2048,
    valid_days: int = 3650,
) -> CertificateAuthority:
    """Self-signed root CA (RSA, SHA-256) for the test PKI."""
    start = _now(now)
    key = _new_rsa_key(key_size)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-date a little so peers with slightly slow clocks accept fresh certificates.
        .not_valid_before(start - timedelta(hours=1))
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return CertificateAuthority(key=key, certificate=builder.sign(key, hashes.SHA256()), name=name)


def _end_entity_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_provider_certificate(
    ca: CertificateAuthority,
    provider_name: str,
    service_address: str,
    *,
    key: Any = None,
    key_size: int = 2048,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_algorithm: str = "sha256",
    basic_constraints: bool = False,
    critical_extra_extension: bool = False,
    email_in_subject: bool = False,
    organization: str | None = None,
) -> tuple[Any, x509.Certificate]:
    """Provider signing certificate per RFC 6109 §5.5; the switches break the profile on purpose."""
    if key is None:
        key = _new_rsa_key(key_size)
    start = _now(not_before) if not_before is not None else _now(None) - timedelta(hours=1)
    end = _now(not_after) if not_after is not None else start + timedelta(days=365)
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization or provider_name),  # SIG-05 when another
        x509.NameAttribute(NameOID.COMMON_NAME, "Posta Certificata"),
    ]
    if email_in_subject:  # SIG-06: SHOULD NOT
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, service_address))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(_end_entity_key_usage(), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(service_address)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    )
    if basic_constraints:  # SIG-11: MUST NOT be present
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if critical_extra_extension:  # SIG-12: any other extension MUST NOT be critical
        policies = x509.CertificatePolicies([x509.PolicyInformation(TEST_POLICY_OID, None)])
        builder = builder.add_extension(policies, critical=True)
    return key, _sign_certificate(builder, ca.key, hash_algorithm)


def make_provider(
    ca: CertificateAuthority,
    provider_name: str,
    domains: Sequence[str],
    *,
    receipt_mailbox: str | None = None,
    service_address: str | None = None,
    **issue_kwargs: Any,
) -> ProviderCredentials:
    domains_t = (domains,) if isinstance(domains, str) else tuple(domains)
    if not domains_t:
        raise ValueError("a provider needs at least one domain")
    service = service_address or f"posta-certificata@{domains_t[0]}"
    receipt = receipt_mailbox or f"ricevute@{domains_t[0]}"
    key, certificate = issue_provider_certificate(ca, provider_name, service, **issue_kwargs)
    return ProviderCredentials(
        provider_name=provider_name,
        domains=domains_t,
        service_address=service,
        receipt_mailbox=receipt,
        key=key,
        certificate=certificate,
        ca_certificate=ca.certificate,
    )


def build_crl(
    ca: CertificateAuthority,
    revoked: Sequence[tuple[int, datetime]],
    *,
    now: datetime | None = None,
    next_update_days: int = 7,
) -> x509.CertificateRevocationList:
    """CRL signed by the CA listing (serial, revocation date) pairs."""
    moment = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(moment)
        .next_update(moment + timedelta(days=next_update_days))
        # Microseconds since the epoch keep the CRL number increasing across re-signings.
        .add_extension(x509.CRLNumber(int(moment.timestamp() * 1_000_000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    for serial, when in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial))
            .revocation_date(_now(when))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256())


def issue_index_signer(
    ca: CertificateAuthority, name: str = "PEC Providers Index", *, now: datetime | None = None
) -> tuple[Any, x509.Certificate]:
    """Certificate that signs the providers index ``.p7m``."""
    key = _new_rsa_key(2048)
    start = _now(now) - timedelta(hours=1)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .add_extension(_end_entity_key_usage(), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder.sign(ca.key, hashes.SHA256())


# --------------------------------------------------------------------------- directory layout


@dataclass
class ProviderFiles:
    slug: str
    certificate: Path
    key: Path


@dataclass
class PkiLayout:
    """A test PKI on disk and the objects read from (or written to) it."""

    directory: Path
    ca: CertificateAuthority
    crl: x509.CertificateRevocationList
    providers: list[ProviderCredentials]
    provider_files: list[ProviderFiles]
    index_signer_key: Any
    index_signer_certificate: x509.Certificate
    index: pec_index.ProvidersIndex
    index_ldif: bytes
    index_p7m: bytes
    signed_index: pec_index.SignedIndex | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderCredentials:
        for provider in self.providers:
            if provider.provider_name == name:
                return provider
        raise KeyError(name)


_REL_PATHS = {
    "ca_certificate": "ca/ca.pem",
    "ca_key": "ca/ca.key.pem",
    "crl": "ca/crl.pem",
    "serials": "ca/serials.json",
    "index_signer_certificate": "index/index-signer.pem",
    "index_signer_key": "index/index-signer.key.pem",
    "index_ldif": "index/providers.ldif",
    "index_p7m": "index/providers.ldif.p7m",
    "manifest": "pki.json",
}


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "provider"
    slug, counter = base, 2
    while slug in taken:
        slug, counter = f"{base}-{counter}", counter + 1
    taken.add(slug)
    return slug


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if secret:
        # Create with 0600 from the start so the key is never readable by others, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
    else:
        # Whole or not at all: a provider reloading the CRL or the index meanwhile never reads half a file.
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_bytes(data)
        tmp.replace(path)


def _write_json(path: Path, data: Any) -> None:
    _write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def write_pki_directory(
    directory: Path, providers: Sequence[ProviderSpec], *, now: datetime | None = None
) -> PkiLayout:
    """Create the CA, provider credentials, empty CRL and signed index under `directory`."""
    directory = Path(directory)
    moment = _now(now)
    ca = generate_ca(now=moment)
    crl = build_crl(ca, [], now=moment)
    signer_key, signer_cert = issue_index_signer(ca, now=moment)

    credentials: list[ProviderCredentials] = []
    files: list[ProviderFiles] = []
    taken: set[str] = set()
    for spec in providers:
        cred = make_provider(ca, spec.name, spec.domains, receipt_mailbox=spec.receipt_mailbox,
                             not_before=moment - timedelta(hours=1), organization=spec.certificate_organization)
        slug = _slug(spec.name, taken)
        credentials.append(cred)
        files.append(
            ProviderFiles(
                slug=slug,
                certificate=directory / "providers" / slug / "cert.pem",
                key=directory / "providers" / slug / "key.pem",
            )
        )

    records = pec_index.index_records_from_providers(credentials)
    ldif_bytes = pec_index.write_ldif(records)
    p7m = pec_index.sign_index(ldif_bytes, signer_key, signer_cert)

    paths = {name: directory / rel for name, rel in _REL_PATHS.items()}
    _write(paths["ca_certificate"], ca.pem())
    _write(paths["ca_key"], ca.key_pem(), secret=True)
    _write(paths["crl"], crl.public_bytes(serialization.Encoding.PEM))
    _write(paths["index_signer_certificate"], _certificate_pem(signer_cert))
    _write(paths["index_signer_key"], private_key_pem(signer_key), secret=True)
    _write(paths["index_ldif"], ldif_bytes)
    _write(paths["index_p7m"], p7m)
    for cred, pf in zip(credentials, files, strict=True):
        _write(pf.certificate, _certificate_pem(cred.certificate))
        _write(pf.key, private_key_pem(cred.key), secret=True)

    def rel(path: Path) -> str:
        return path.relative_to(directory).as_posix()

    serials: dict[str, dict[str, str]] = {
        str(ca.certificate.serial_number): {
            "subject": ca.certificate.subject.rfc4514_string(),
            "path": _REL_PATHS["ca_certificate"],
        },
        str(signer_cert.serial_number): {
            "subject": signer_cert.subject.rfc4514_string(),
            "path": _REL_PATHS["index_signer_certificate"],
        },
    }
    for cred, pf in zip(credentials, files, strict=True):
        serials[str(cred.certificate.serial_number)] = {
            "subject": cred.certificate.subject.rfc4514_string(),
            "path": rel(pf.certificate),
        }
    _write_json(paths["serials"], serials)

    # Paths in the manifest are relative to the directory so the tree can be moved as a whole.
    manifest = {
        "format": "pec-conformance-pki/1",
        "created": moment.isoformat(),
        "ca": {
            "name": ca.name,
            "certificate": _REL_PATHS["ca_certificate"],
            "key": _REL_PATHS["ca_key"],
            "crl": _REL_PATHS["crl"],
            "serials": _REL_PATHS["serials"],
        },
        "index": {
            "signer_certificate": _REL_PATHS["index_signer_certificate"],
            "signer_key": _REL_PATHS["index_signer_key"],
            "ldif": _REL_PATHS["index_ldif"],
            "p7m": _REL_PATHS["index_p7m"],
        },
        "providers": [
            {
                "name": cred.provider_name,
                "slug": pf.slug,
                "domains": list(cred.domains),
                "service_address": cred.service_address,
                "receipt_mailbox": cred.receipt_mailbox,
                "certificate": rel(pf.certificate),
                "key": rel(pf.key),
                "serial": str(cred.certificate.serial_number),
                "sha1": pec_index.certificate_hash(cred.certificate_der()),
            }
            for cred, pf in zip(credentials, files, strict=True)
        ],
    }
    _write_json(paths["manifest"], manifest)

    signed = pec_index.open_signed_index(p7m, trusted_signer=signer_cert)
    return PkiLayout(
        directory=directory,
        ca=ca,
        crl=crl,
        providers=credentials,
        provider_files=files,
        index_signer_key=signer_key,
        index_signer_certificate=signer_cert,
        index=pec_index.parse_ldif(ldif_bytes),
        index_ldif=ldif_bytes,
        index_p7m=p7m,
        signed_index=signed,
        paths=paths,
    )


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / _REL_PATHS["manifest"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no PKI manifest (run write_pki_directory first)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or "ca" not in manifest or "providers" not in manifest:
        raise ValueError(f"{path}: not a PKI manifest")
    return manifest


def _inside(directory: Path, relative: str) -> Path:
    # The manifest is ours, but refuse paths escaping the directory all the same.
    path = (directory / relative).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise ValueError(f"manifest path {relative!r} leaves {directory}")
    return path


def _load_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def load_pki_directory(directory: Path) -> PkiLayout:
    """Read back a directory written by :func:`write_pki_directory`."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    ca_info, index_info = manifest["ca"], manifest["index"]
    ca_cert = x509.load_pem_x509_certificate(_inside(directory, ca_info["certificate"]).read_bytes())
    ca = CertificateAuthority(
        key=_load_key(_inside(directory, ca_info["key"])),
        certificate=ca_cert,
        name=str(ca_info.get("name", "")),
    )
    crl = x509.load_pem_x509_crl(_inside(directory, ca_info["crl"]).read_bytes())

    credentials: list[ProviderCredentials] = []
    files: list[ProviderFiles] = []
    for entry in manifest["providers"]:
        cert_path = _inside(directory, entry["certificate"])
        key_path = _inside(directory, entry["key"])
        credentials.append(
            ProviderCredentials(
                provider_name=entry["name"],
                domains=tuple(entry["domains"]),
                service_address=entry["service_address"],
                receipt_mailbox=entry["receipt_mailbox"],
                key=_load_key(key_path),
                certificate=x509.load_pem_x509_certificate(cert_path.read_bytes()),
                ca_certificate=ca_cert,
            )
        )
        files.append(ProviderFiles(slug=entry["slug"], certificate=cert_path, key=key_path))

    signer_cert = x509.load_pem_x509_certificate(
        _inside(directory, index_info["signer_certificate"]).read_bytes()
    )
    signer_key = _load_key(_inside(directory, index_info["signer_key"]))
    ldif_bytes = _inside(directory, index_info["ldif"]).read_bytes()
    p7m = _inside(directory, index_info["p7m"]).read_bytes()
    paths = {name: directory / rel for name, rel in _REL_PATHS.items()}
    return PkiLayout(
        directory=directory,
        ca=ca,
        crl=crl,
        providers=credentials,
        provider_files=files,
        index_signer_key=signer_key,
        index_signer_certificate=signer_cert,
        index=pec_index.parse_ldif(ldif_bytes),
        index_ldif=ldif_bytes,
        index_p7m=p7m,
        signed_index=pec_index.open_signed_index(p7m, trusted_signer=signer_cert),
        paths=paths,
    )


def revoke_in_directory(
    directory: Path, certificate_pem_path_or_serial: Path | int, *, now: datetime | None = None
) -> int:
    """Add a certificate to ``ca/crl.pem`` (re-signed by the CA); return its serial."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    moment = _now(now)
    target = certificate_pem_path_or_serial
    if isinstance(target, int) and not isinstance(target, bool):
        serial = target
    else:
        path = Path(target)
        if not path.is_absolute() and not path.exists():
            path = directory / path  # relative to the PKI directory, as in the manifest
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number

    ca_info = manifest["ca"]
    ca = CertificateAuthority(
        key=_load_key(_inside(directory, ca_info["key"])),
        certificate=x509.load_pem_x509_certificate(_inside(directory, ca_info["certificate"]).read_bytes()),
        name=str(ca_info.get("name", "")),
    )
    crl_path = _inside(directory, ca_info["crl"])
    old = x509.load_pem_x509_crl(crl_path.read_bytes())
    revoked = [(entry.serial_number, entry.revocation_date_utc) for entry in old]
    if serial not in {s for s, _ in revoked}:
        revoked.append((serial, moment))
    crl = build_crl(ca, revoked, now=moment)
    _write(crl_path, crl.public_bytes(serialization.Encoding.PEM))
    return serial


def issue_tls_server_certificate(
    ca: CertificateAuthority, hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"), *, key_size: int = 2048,
    now: datetime | None = None, valid_days: int = 825,
) -> tuple[Any, x509.Certificate]:
    """TLS server certificate for STARTTLS and IMAPS/POP3S on loopback (serverAuth, names in the SAN)."""
    import ipaddress

    key = _new_rsa_key(key_size)
    start = _now(now) - timedelta(hours=1)
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    return key, builder.sign(ca.key, hashes.SHA256())


# --------------------------------------------------------------------------- counterpart forgeries

FORGERY_KINDS = ("expired", "not-yet-valid", "revoked", "foreign", "renewed")
# The forgery certificates that chain to the test CA; they join the provider's index record (below).
_INDEXED_FORGERIES = ("expired", "not-yet-valid", "revoked", "renewed", "to-revoke")


def issue_counterpart_forgery_certificates(
    ca: CertificateAuthority, provider_name: str, service_address: str, *, now: datetime | None = None
) -> dict[str, tuple[Any, x509.Certificate]]:
    """Signing keys a counterpart uses to forge envelopes a target must not trust (RIC-05..07, SIG-*).

    - ``expired``: issued by `ca`, validity ended a day before `now`;
    - ``not-yet-valid``: issued by `ca`, validity starts thirty days after `now`;
    - ``revoked``: issued by `ca` and valid; the caller lists its serial in a CRL (:func:`build_crl`);
    - ``foreign``: issued by a fresh CA of its own, trusted by nobody and in no index;
    - ``renewed``: a second valid certificate of the provider (a renewal, §4.5): listed in the index next
      to the first, so a message signed with it must be accepted (IDX-12).
    - ``to-revoke``: another valid certificate listed in the index, kept for the suite to revoke during a
      run: a target must refuse what it signs once its CRL refresh picked the revocation up (RIC-07).

    Every certificate has the provider's name and service address, so only the tested property differs.
    """
    moment = _now(now)
    foreign_ca = generate_ca(f"Foreign Test CA for {provider_name}", now=moment)
    return {
        "expired": issue_provider_certificate(ca, provider_name, service_address,
                                              not_before=moment - timedelta(days=400),
                                              not_after=moment - timedelta(days=1)),
        "not-yet-valid": issue_provider_certificate(ca, provider_name, service_address,
                                                    not_before=moment + timedelta(days=30),
                                                    not_after=moment + timedelta(days=395)),
        "revoked": issue_provider_certificate(ca, provider_name, service_address,
                                              not_before=moment - timedelta(hours=1)),
        "foreign": issue_provider_certificate(foreign_ca, provider_name, service_address,
                                              not_before=moment - timedelta(hours=1)),
        "renewed": issue_provider_certificate(ca, provider_name, service_address,
                                              not_before=moment - timedelta(hours=1)),
        "to-revoke": issue_provider_certificate(ca, provider_name, service_address,
                                                not_before=moment - timedelta(hours=1)),
    }


def _add_index_certificates(layout: PkiLayout, provider_name: str, certificates: Sequence[x509.Certificate]) -> None:
    """Add certificates to the provider's main record (a renewal overlap, §4.5) and re-sign the index."""
    import dataclasses

    ders = [c.public_bytes(serialization.Encoding.DER) for c in certificates]
    records = []
    for record in layout.index.records:
        if record.provider_name == provider_name and record.is_main:
            extra = [d for d in ders if d not in record.certificates]
            record = dataclasses.replace(
                record,
                certificates=(*record.certificates, *extra),
                certificate_hashes=(*record.certificate_hashes, *(pec_index.certificate_hash(d) for d in extra)),
            )
        records.append(record)
    ldif_bytes = pec_index.write_ldif(records)
    p7m = pec_index.sign_index(ldif_bytes, layout.index_signer_key, layout.index_signer_certificate)
    paths = {name: layout.directory / rel for name, rel in _REL_PATHS.items()}
    _write(paths["index_ldif"], ldif_bytes)
    _write(paths["index_p7m"], p7m)
    layout.index = pec_index.parse_ldif(ldif_bytes)
    layout.index_ldif = ldif_bytes
    layout.index_p7m = p7m
    layout.signed_index = pec_index.open_signed_index(p7m, trusted_signer=layout.index_signer_certificate)


def write_forgery_material(
    directory: Path, layout: PkiLayout, provider_name: str, *, now: datetime | None = None,
    in_index: bool = True,
) -> dict[str, Path]:
    """Write the counterpart's forgery keys under ``<directory>/forgery/<slug>/<kind>/{cert,key}.pem``.

    The ``revoked`` serial is added to ``ca/crl.pem`` (re-signed by the CA, as :func:`revoke_in_directory`
    does). With `in_index` (the default) the expired, not-yet-valid and revoked certificates are added
    to the provider's index record as further ``providerCertificate`` values, and the index LDIF and
    ``.p7m`` are rewritten: a target then reaches the validity and revocation tests instead of stopping
    at the origin test. The foreign certificate is never in the index. `layout` (the directory as
    written or loaded) is updated in place (``crl``, ``index``...). Returns the paths by name: each
    kind's directory (holding ``cert.pem`` and ``key.pem``), ``crl`` and ``manifest`` (``forgery.json``).
    Run it before a target loads its CRL and index.
    """
    directory = Path(directory)
    moment = _now(now)
    cred = layout.provider(provider_name)
    slug = next(pf.slug for c, pf in zip(layout.providers, layout.provider_files, strict=True)
                if c.provider_name == provider_name)
    material = issue_counterpart_forgery_certificates(layout.ca, provider_name, cred.service_address, now=moment)
    base = directory / "forgery" / slug
    paths: dict[str, Path] = {}
    entries: dict[str, dict[str, str]] = {}
    for kind, (key, cert) in material.items():
        _write(base / kind / "cert.pem", _certificate_pem(cert))
        _write(base / kind / "key.pem", private_key_pem(key), secret=True)
        paths[kind] = base / kind
        entries[kind] = {"serial": str(cert.serial_number), "subject": cert.subject.rfc4514_string(),
                         "issuer": cert.issuer.rfc4514_string(),
                         "not_before": cert.not_valid_before_utc.isoformat(),
                         "not_after": cert.not_valid_after_utc.isoformat(),
                         "sha1": pec_index.certificate_hash(cert.public_bytes(serialization.Encoding.DER)),
                         "in_index": str(in_index and kind in _INDEXED_FORGERIES).lower()}
    serial = revoke_in_directory(directory, material["revoked"][1].serial_number, now=moment)
    paths["crl"] = directory / _REL_PATHS["crl"]
    layout.crl = x509.load_pem_x509_crl(paths["crl"].read_bytes())

    serials_path = directory / _REL_PATHS["serials"]
    try:
        serials = json.loads(serials_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        serials = {}
    for kind, (_, cert) in material.items():
        if kind != "foreign":  # serials of this CA only
            serials[str(cert.serial_number)] = {"subject": cert.subject.rfc4514_string(),
                                                "path": (base / kind / "cert.pem").relative_to(directory).as_posix(),
                                                "forgery": kind}
    _write_json(serials_path, serials)

    if in_index:
        _add_index_certificates(layout, provider_name, [material[k][1] for k in _INDEXED_FORGERIES])
    paths["manifest"] = base / "forgery.json"
    _write_json(paths["manifest"], {"provider": provider_name, "created": moment.isoformat(),
                                    "revoked_serial": str(serial), "certificates": entries})
    return paths


def load_forgery_material(directory: Path, provider_name: str) -> dict[str, tuple[Any, x509.Certificate]]:
    """Read back what :func:`write_forgery_material` wrote: kind -> (key, certificate)."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    slug = next((p["slug"] for p in manifest["providers"] if p["name"] == provider_name), None)
    if slug is None:
        raise KeyError(provider_name)
    base = directory / "forgery" / slug
    out: dict[str, tuple[Any, x509.Certificate]] = {}
    for kind in FORGERY_KINDS:
        cert_path, key_path = base / kind / "cert.pem", base / kind / "key.pem"
        if cert_path.exists() and key_path.exists():
            out[kind] = (_load_key(key_path), x509.load_pem_x509_certificate(cert_path.read_bytes()))
    return out

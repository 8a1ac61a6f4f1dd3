"""Providers index (RFC 6109 §4.5): LDIF records, lookups, and the signed ``.p7m`` form.

LDIF is read and written with the `ldif` library only; URL values (``attr:< url``) are never
fetched (``process_url_schemes=()``), and lookups are case-insensitive (decision D4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ldif
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .cms import CmsVerification, sign_attached, verify_cms

if TYPE_CHECKING:  # pki imports this module; only the type is needed here
    from .pki import ProviderCredentials

__all__ = [
    "BASE_DN",
    "MAX_INDEX_SIZE",
    "IndexFormatError",
    "IndexRecord",
    "ProvidersIndex",
    "SignedIndex",
    "certificate_hash",
    "index_records_from_providers",
    "load_index",
    "open_signed_index",
    "parse_ldif",
    "provider_dn",
    "sign_index",
    "write_ldif",
]

BASE_DN = "o=postacert"
MAX_INDEX_SIZE = 64 * 1024 * 1024
DEFAULT_ROOT_DESCRIPTION = "Indice dei gestori di posta elettronica certificata"

_HASH_RE = re.compile(r"^[0-9A-Fa-f]{40}$")
_BOM = b"\xef\xbb\xbf"


class IndexFormatError(ValueError):
    """The providers index (LDIF or signed .p7m) cannot be used."""


@dataclass(frozen=True)
class IndexRecord:
    dn: str
    provider_name: str
    managed_domains: tuple[str, ...]
    mail_receipt: str
    certificates: tuple[bytes, ...]
    certificate_hashes: tuple[str, ...]
    ldif_location_url: str | None = None
    provider_unit: str | None = None
    description: str | None = None

    @property
    def is_main(self) -> bool:
        return self.provider_unit is None


def certificate_hash(der: bytes) -> str:
    """Lower-case hex SHA-1 of a DER certificate, as in ``providerCertificateHash``."""
    return hashlib.sha1(der).hexdigest()


def _domain_key(domain: str) -> str:
    # Accept an address too: the part after the last '@' is the domain.
    return domain.rsplit("@", 1)[-1].strip().rstrip(".").lower()


def _as_der(certificate: bytes | x509.Certificate) -> bytes:
    if isinstance(certificate, x509.Certificate):
        return certificate.public_bytes(serialization.Encoding.DER)
    return bytes(certificate)


class ProvidersIndex:
    """Local copy of the index with the lookups the access and incoming points need."""

    def __init__(self, records: Sequence[IndexRecord]):
        self.records: tuple[IndexRecord, ...] = tuple(records)
        self._by_domain: dict[str, list[IndexRecord]] = {}
        for record in self.records:
            for domain in record.managed_domains:
                bucket = self._by_domain.setdefault(_domain_key(domain), [])
                if record not in bucket:
                    bucket.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"ProvidersIndex({len(self.records)} records)"

    def records_for_certificate(self, der: bytes | x509.Certificate) -> list[IndexRecord]:
        """Records holding the certificate: by DER value or by SHA-1 hex (case-insensitive, D4)."""
        der = _as_der(der)
        digest = certificate_hash(der)
        return [
            record
            for record in self.records
            if der in record.certificates or digest in (h.lower() for h in record.certificate_hashes)
        ]

    def is_pec_domain(self, domain: str) -> bool:
        return _domain_key(domain) in self._by_domain

    def record_for_domain(self, domain: str) -> IndexRecord | None:
        records = self._by_domain.get(_domain_key(domain), [])
        # Prefer the main environment when main and secondary records list the same domain.
        for record in records:
            if record.is_main:
                return record
        return records[0] if records else None

    def receipt_mailbox_for(self, certificate_der: bytes | x509.Certificate, sender_domain: str | None) -> str | None:
        """mailReceipt for presa in carico / rilevazione virus (decision D21)."""
        holders = self.records_for_certificate(certificate_der)
        if not holders:
            return None
        if sender_domain:
            wanted = _domain_key(sender_domain)
            for record in holders:
                if wanted in {_domain_key(d) for d in record.managed_domains}:
                    return record.mail_receipt
        for record in holders:
            if record.is_main:
                return record.mail_receipt
        # Only secondary records hold the certificate: fall back to that provider's main record.
        names = {record.provider_name.casefold() for record in holders}
        for record in self.records:
            if record.is_main and record.provider_name.casefold() in names:
                return record.mail_receipt
        return None


# --------------------------------------------------------------------------- building records


def _escape_dn_value(value: str) -> str:
    """RFC 4514 escaping of an attribute value in a DN."""
    out = []
    for i, char in enumerate(value):
        if char in ',+"\\<>;=' or (char == "#" and i == 0) or (char == " " and i in (0, len(value) - 1)):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def provider_dn(provider_name: str, provider_unit: str | None = None) -> str:
    """``providerName=<name>,o=postacert`` or ``providerUnit=<unit>,providerName=<name>,o=postacert``."""
    dn = f"providerName={_escape_dn_value(provider_name)},{BASE_DN}"
    if provider_unit is not None:
        dn = f"providerUnit={_escape_dn_value(provider_unit)},{dn}"
    return dn


def index_records_from_providers(
    providers: Sequence[ProviderCredentials], base_url: str | None = None
) -> list[IndexRecord]:
    """One main-environment record per provider; LDIFLocationURL ``<base_url>/<slug>.ldif.p7m``."""
    records: list[IndexRecord] = []
    for provider in providers:
        der = provider.certificate.public_bytes(serialization.Encoding.DER)
        url = None
        if base_url:
            slug = re.sub(r"[^a-z0-9]+", "-", provider.provider_name.lower()).strip("-") or "provider"
            url = f"{base_url.rstrip('/')}/{slug}.ldif.p7m"
        records.append(
            IndexRecord(
                dn=provider_dn(provider.provider_name),
                provider_name=provider.provider_name,
                managed_domains=tuple(provider.domains),
                mail_receipt=provider.receipt_mailbox,
                certificates=(der,),
                certificate_hashes=(certificate_hash(der),),
                ldif_location_url=url,
            )
        )
    return records


# --------------------------------------------------------------------------- LDIF


def write_ldif(
    records: Sequence[IndexRecord],
    *,
    root_description: str = DEFAULT_ROOT_DESCRIPTION,
    root_ldif_url: str | None = None,
) -> bytes:
    """Serialise the root entry and the provider records as UTF-8 LDIF."""
    buffer = io.BytesIO()
    writer = ldif.LDIFWriter(buffer, base64_attrs=["providerCertificate;binary"], cols=76, line_sep=b"\n")
    root: dict[str, list[Any]] = {
        "objectClass": ["top", "organization", "LDIFLocationURLObject"],
        "o": ["postacert"],
    }
    if root_ldif_url:
        root["LDIFLocationURL"] = [root_ldif_url]
    if root_description:
        root["description"] = [root_description]
    writer.unparse(BASE_DN, root)

    for record in records:
        entry: dict[str, list[Any]] = {
            "objectClass": ["top", "provider"],
            "providerName": [record.provider_name],
        }
        if record.provider_unit is not None:
            entry["providerUnit"] = [record.provider_unit]
        entry["managedDomains"] = list(record.managed_domains)
        entry["mailReceipt"] = [record.mail_receipt]
        entry["providerCertificateHash"] = list(record.certificate_hashes)
        entry["providerCertificate;binary"] = [bytes(der) for der in record.certificates]
        # §4.5: secondary-environment records take LDIFLocationURL from the main record.
        if record.ldif_location_url and record.provider_unit is None:
            entry["LDIFLocationURL"] = [record.ldif_location_url]
        if record.description:
            entry["description"] = [record.description]
        dn = record.dn or provider_dn(record.provider_name, record.provider_unit)
        writer.unparse(dn, entry)
    return buffer.getvalue()


def _text(value: bytes, attribute: str, dn: str) -> str:
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise IndexFormatError(f"{dn}: {attribute} is not UTF-8") from exc


def _single(attrs: dict[str, list[bytes]], name: str, label: str, dn: str, *, required: bool) -> str | None:
    values = attrs.get(name, [])
    if not values:
        if required:
            raise IndexFormatError(f"{dn}: required attribute {label} missing")
        return None
    if len(values) > 1 and name != "description":
        raise IndexFormatError(f"{dn}: {label} is single-valued but has {len(values)} values")
    return _text(values[0], label, dn)


def _certificate_value(value: bytes, dn: str) -> bytes:
    der = value
    stripped = value.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            der = x509.load_pem_x509_certificate(stripped).public_bytes(serialization.Encoding.DER)
        except ValueError as exc:
            raise IndexFormatError(f"{dn}: providerCertificate PEM cannot be parsed: {exc}") from exc
    elif not value.startswith(b"\x30"):
        # Written as plain base64 text without ';binary'/'::': decode it once.
        try:
            der = base64.b64decode(b"".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IndexFormatError(f"{dn}: providerCertificate is neither DER nor base64") from exc
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise IndexFormatError(f"{dn}: providerCertificate is not a valid certificate: {exc}") from exc
    return der


def _record_from_entry(dn: str, attrs: dict[str, list[bytes]]) -> IndexRecord:
    name = _single(attrs, "providername", "providerName", dn, required=True)
    receipt = _single(attrs, "mailreceipt", "mailReceipt", dn, required=True)
    domains = tuple(_text(v, "managedDomains", dn) for v in attrs.get("manageddomains", []))
    if not domains:
        raise IndexFormatError(f"{dn}: required attribute managedDomains missing")
    hashes_ = []
    for value in attrs.get("providercertificatehash", []):
        text = _text(value, "providerCertificateHash", dn)
        if not _HASH_RE.match(text):
            raise IndexFormatError(f"{dn}: providerCertificateHash {text!r} is not a hex SHA-1")
        hashes_.append(text)
    certificates = tuple(_certificate_value(v, dn) for v in attrs.get("providercertificate", []))
    if not certificates and not hashes_:
        raise IndexFormatError(f"{dn}: neither providerCertificate nor providerCertificateHash present")
    return IndexRecord(
        dn=dn,
        provider_name=name or "",
        managed_domains=domains,
        mail_receipt=receipt or "",
        certificates=certificates,
        certificate_hashes=tuple(hashes_),
        ldif_location_url=_single(attrs, "ldiflocationurl", "LDIFLocationURL", dn, required=False),
        provider_unit=_single(attrs, "providerunit", "providerUnit", dn, required=False),
        description=_single(attrs, "description", "description", dn, required=False),
    )


def parse_ldif(data: bytes) -> ProvidersIndex:
    """Parse an index LDIF; non-provider entries are skipped, URL values are never fetched."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IndexFormatError("LDIF input must be bytes")
    data = bytes(data)
    if len(data) > MAX_INDEX_SIZE:
        raise IndexFormatError(f"LDIF larger than {MAX_INDEX_SIZE} bytes refused")
    data = data.removeprefix(_BOM)
    if b"\x00" in data:
        raise IndexFormatError("binary data, not LDIF text")
    if not data.strip():
        raise IndexFormatError("empty LDIF")

    parser = ldif.LDIFParser(
        io.BytesIO(data), process_url_schemes=(), encoding=None, strict=True
    )
    records: list[IndexRecord] = []
    entries = 0
    try:
        for dn, entry in parser.parse():
            if dn is None:
                continue  # a lone "version: 1" block
            entries += 1
            attrs: dict[str, list[bytes]] = {}
            for key, values in entry.items():
                # Attribute names are case-insensitive; options such as ';binary' are dropped.
                base = key.split(";", 1)[0].strip().lower()
                # Empty values include 'attr:< url' lines, which the parser leaves unread.
                attrs.setdefault(base, []).extend(v for v in values if v.strip())
            change = [v.strip().lower() for v in attrs.pop("changetype", [])]
            if change and change != [b"add"]:
                raise IndexFormatError(f"{dn}: LDIF change records ({change[0].decode(errors='replace')}) "
                                       "are not an index")
            classes = {v.strip().lower() for v in attrs.get("objectclass", [])}
            if b"provider" not in classes and "providername" not in attrs:
                continue
            records.append(_record_from_entry(dn, attrs))
    except IndexFormatError:
        raise
    except Exception as exc:  # ldif raises ValueError, binascii.Error, UnicodeError...
        raise IndexFormatError(f"malformed LDIF near line {parser.line_counter}: {exc}") from exc
    if entries == 0:
        raise IndexFormatError("no LDIF entries found")
    return ProvidersIndex(records)


# --------------------------------------------------------------------------- signed index


@dataclass
class SignedIndex:
    ldif: bytes
    verification: CmsVerification
    signer_trusted: bool | None


def sign_index(ldif_bytes: bytes, key: Any, certificate: x509.Certificate) -> bytes:
    """DER ``.p7m`` (SignedData with encapsulated LDIF), as §4.5 publishes it."""
    return sign_attached(ldif_bytes, key, certificate)


_PEM_RE = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END [A-Z0-9 ]+-----", re.DOTALL)
_B64_RE = re.compile(rb"^[A-Za-z0-9+/=\s]+$")


def _p7m_der(data: bytes) -> bytes:
    stripped = data.removeprefix(_BOM).strip()
    match = _PEM_RE.search(stripped)
    body = match.group(1) if match else stripped
    if match or (not stripped.startswith(b"\x30") and _B64_RE.match(stripped)):
        try:
            return base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise IndexFormatError(f"signed index: bad base64: {exc}") from exc
    return data


def open_signed_index(p7m: bytes, trusted_signer: x509.Certificate | None = None) -> SignedIndex:
    """Verify a signed index (DER, PEM or bare base64) and return its LDIF."""
    if not isinstance(p7m, bytes | bytearray | memoryview):
        raise IndexFormatError("signed index must be bytes")
    p7m = bytes(p7m)
    if len(p7m) > MAX_INDEX_SIZE:
        raise IndexFormatError(f"signed index larger than {MAX_INDEX_SIZE} bytes refused")
    verification = verify_cms(_p7m_der(p7m))
    if verification.encapsulated_content is None:
        reasons = "; ".join(verification.errors) or "detached signature"
        raise IndexFormatError(f"signed index carries no LDIF content ({reasons})")
    trusted: bool | None = None
    if trusted_signer is not None:
        trusted = verification.ok and verification.signer_certificate == trusted_signer
    return SignedIndex(ldif=verification.encapsulated_content, verification=verification, signer_trusted=trusted)


def load_index(
    data: bytes, trusted_signer: x509.Certificate | None = None
) -> tuple[ProvidersIndex, SignedIndex | None]:
    """Load an index from LDIF text or a signed .p7m (DER/PEM/base64), sniffing which."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IndexFormatError("index input must be bytes")
    data = bytes(data)
    head = data.removeprefix(_BOM).lstrip()[:16].lower()
    if head.startswith((b"dn:", b"version:", b"#")):
        return parse_ldif(data), None
    signed = open_signed_index(data, trusted_signer)
    return parse_ldif(signed.ldif), signed

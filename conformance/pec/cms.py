"""CMS SignedData (RFC 5652) signing and verification, sans-I/O.

cryptography 50 signs PKCS#7 but cannot verify it and refuses SHA-1, so both directions are built
on asn1crypto here: one code path for every digest, a chosen signingTime, and verification that
never raises on hostile input (PITFALLS.md, "S/MIME signatures").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

__all__ = [
    "DIGEST_NAMES",
    "MAX_CMS_SIZE",
    "CmsVerification",
    "sign_attached",
    "sign_detached",
    "verify_cms",
]

# Digests we emit; SHA-1 only for legacy-peer scenarios (decision D16).
DIGEST_NAMES = {"sha1", "sha256", "sha384", "sha512"}

# Refuse larger inputs before parsing: bounds memory and time on hostile data.
MAX_CMS_SIZE = 16 * 1024 * 1024

# Digests we accept when verifying (a peer may use any of these).
_VERIFY_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_224": hashes.SHA3_224,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}


@dataclass
class CmsVerification:
    """Outcome of :func:`verify_cms`; every field is filled even when parsing fails."""

    structure_ok: bool = False
    signature_valid: bool | None = None
    content_digest_matches: bool | None = None
    digest_algorithm: str | None = None
    signature_algorithm: str | None = None
    signer_certificate: x509.Certificate | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    signing_time: datetime | None = None
    encapsulated_content: bytes | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.structure_ok
            and self.signature_valid is True
            and self.content_digest_matches is not False
        )


# --------------------------------------------------------------------------- signing


def _digest(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _asn1_time(moment: datetime) -> asn1_cms.Time:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    if 1950 <= moment.year < 2050:
        return asn1_cms.Time({"utc_time": moment.replace(microsecond=0)})
    return asn1_cms.Time({"general_time": moment.replace(microsecond=0)})


def _signature_parts(key: object, digest: str, data: bytes) -> tuple[str, bytes]:
    """Sign `data` with `key`; return the asn1crypto signature algorithm name and the value."""
    hash_algo = _VERIFY_HASHES[digest]()
    if isinstance(key, rsa.RSAPrivateKey):
        # rsaEncryption as the SignerInfo algorithm, as OpenSSL and most MUAs emit.
        return "rsassa_pkcs1v15", key.sign(data, padding.PKCS1v15(), hash_algo)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"{digest}_ecdsa", key.sign(data, ec.ECDSA(hash_algo))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519", key.sign(data)
    raise TypeError(f"unsupported signing key type: {type(key).__name__}")


# ---- fast path: RSA signatures assembled as DER directly (asn1crypto's builders dominate the cost of
# signing every receipt otherwise); the structure is the same as the asn1crypto path below.

_OID_DER = {
    "data": bytes.fromhex("06092a864886f70d010701"),
    "signed_data": bytes.fromhex("06092a864886f70d010702"),
    "content_type": bytes.fromhex("06092a864886f70d010903"),
    "message_digest": bytes.fromhex("06092a864886f70d010904"),
    "signing_time": bytes.fromhex("06092a864886f70d010905"),
    "rsa": bytes.fromhex("06092a864886f70d010101"),
    "sha1": bytes.fromhex("06052b0e03021a"),
    "sha256": bytes.fromhex("0609608648016503040201"),
    "sha384": bytes.fromhex("0609608648016503040202"),
    "sha512": bytes.fromhex("0609608648016503040203"),
}
_NULL = b"\x05\x00"


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return _der(0x02, raw)


def _der_time(moment: datetime) -> bytes:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    if 1950 <= moment.year < 2050:
        return _der(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _der(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


_CERT_PARTS: dict[bytes, tuple[bytes, bytes]] = {}


def _certificate_parts(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """(DER of the certificate, DER of its issuerAndSerialNumber), cached per certificate."""
    fingerprint = certificate.fingerprint(hashes.SHA256())
    parts = _CERT_PARTS.get(fingerprint)
    if parts is None:
        der = certificate.public_bytes(serialization.Encoding.DER)
        issuer_serial = _der(0x30, certificate.issuer.public_bytes() + _der_integer(certificate.serial_number))
        parts = _CERT_PARTS.setdefault(fingerprint, (der, issuer_serial))
    return parts


def _build_signed_data_rsa(content: bytes, key: rsa.RSAPrivateKey, certificate: x509.Certificate, *, digest: str,
                           attached: bool, extra_certificates: Sequence[x509.Certificate],
                           when: datetime) -> bytes:
    def attribute(oid: str, value: bytes) -> bytes:
        return _der(0x30, _OID_DER[oid] + _der(0x31, value))

    attrs = [
        attribute("content_type", _OID_DER["data"]),
        attribute("signing_time", _der_time(when)),
        attribute("message_digest", _der(0x04, _digest(digest, content))),
    ]
    attrs_body = b"".join(sorted(attrs))  # DER: a SET OF is sorted by encoding
    signature = key.sign(_der(0x31, attrs_body), padding.PKCS1v15(), _VERIFY_HASHES[digest]())
    digest_alg = _der(0x30, _OID_DER[digest] + _NULL)
    cert_der, issuer_serial = _certificate_parts(certificate)
    certs = cert_der + b"".join(_certificate_parts(c)[0] for c in extra_certificates)
    signer_info = _der(0x30, _der_integer(1) + issuer_serial + digest_alg + _der(0xA0, attrs_body)
                       + _der(0x30, _OID_DER["rsa"] + _NULL) + _der(0x04, signature))
    encap = _OID_DER["data"] + (_der(0xA0, _der(0x04, content)) if attached else b"")
    signed_data = _der(0x30, _der_integer(1) + _der(0x31, digest_alg) + _der(0x30, encap) + _der(0xA0, certs)
                       + _der(0x31, signer_info))
    return _der(0x30, _OID_DER["signed_data"] + _der(0xA0, signed_data))


def _build_signed_data(
    content: bytes,
    key: object,
    certificate: x509.Certificate,
    *,
    digest: str,
    attached: bool,
    extra_certificates: Sequence[x509.Certificate] = (),
    signing_time: datetime | None = None,
) -> bytes:
    digest = digest.lower().replace("-", "")
    if digest not in DIGEST_NAMES:
        raise ValueError(f"unsupported digest {digest!r}; choose one of {sorted(DIGEST_NAMES)}")
    if not isinstance(content, bytes | bytearray | memoryview):
        raise TypeError("content must be bytes")
    content = bytes(content)
    when = signing_time if signing_time is not None else datetime.now(UTC)
    if isinstance(key, rsa.RSAPrivateKey):
        return _build_signed_data_rsa(content, key, certificate, digest=digest, attached=attached,
                                      extra_certificates=extra_certificates, when=when)

    signer_cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    certs = [signer_cert]
    for extra in extra_certificates:
        certs.append(asn1_x509.Certificate.load(extra.public_bytes(serialization.Encoding.DER)))

    signed_attrs = asn1_cms.CMSAttributes(
        [
            asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            asn1_cms.CMSAttribute({"type": "signing_time", "values": [_asn1_time(when)]}),
            asn1_cms.CMSAttribute(
                {"type": "message_digest", "values": [_digest(digest, content)]}
            ),
            asn1_cms.CMSAttribute(
                {
                    "type": "smime_capabilities",
                    "values": [
                        [
                            {"capability_id": "aes256_cbc"},
                            {"capability_id": "aes192_cbc"},
                            {"capability_id": "aes128_cbc"},
                        ]
                    ],
                }
            ),
        ]
    )
    # The signature covers the attributes DER-encoded as a SET OF (tag 0x31), not as [0].
    to_sign = signed_attrs.dump(force=True)
    sig_algo, signature = _signature_parts(key, digest, to_sign)

    digest_algorithm = asn1_algos.DigestAlgorithm({"algorithm": digest})
    signer_info = asn1_cms.SignerInfo(
        {
            "version": "v1",
            "sid": asn1_cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": asn1_cms.IssuerAndSerialNumber(
                        {"issuer": signer_cert.issuer, "serial_number": signer_cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": digest_algorithm,
            "signed_attrs": signed_attrs,
            "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": sig_algo}),
            "signature": signature,
        }
    )
    encap: dict[str, object] = {"content_type": "data"}
    if attached:
        encap["content"] = content
    signed_data = asn1_cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [digest_algorithm],
            "encap_content_info": encap,
            "certificates": certs,
            "signer_infos": [signer_info],
        }
    )
    return asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def sign_detached(
    content: bytes,
    key: object,
    certificate: x509.Certificate,
    *,
    digest: str = "sha256",
    extra_certificates: Sequence[x509.Certificate] = (),
    signing_time: datetime | None = None,
) -> bytes:
    """Detached CMS SignedData (DER) over exactly `content` (no line-end rewriting)."""
    return _build_signed_data(
        content,
        key,
        certificate,
        digest=digest,
        attached=False,
        extra_certificates=extra_certificates,
        signing_time=signing_time,
    )


def sign_attached(
    content: bytes,
    key: object,
    certificate: x509.Certificate,
    *,
    digest: str = "sha256",
    extra_certificates: Sequence[x509.Certificate] = (),
    signing_time: datetime | None = None,
) -> bytes:
    """CMS SignedData (DER) with encapsulated content: the signed ``.p7m`` form."""
    return _build_signed_data(
        content,
        key,
        certificate,
        digest=digest,
        attached=True,
        extra_certificates=extra_certificates,
        signing_time=signing_time,
    )


# --------------------------------------------------------------------------- verification


_LOADED: dict[bytes, x509.Certificate] = {}


def _load_der_certificate(der: bytes) -> x509.Certificate:
    """The same provider certificate arrives in every message: parse it once."""
    cert = _LOADED.get(der)
    if cert is None:
        if len(_LOADED) > 1024:
            _LOADED.clear()
        cert = _LOADED[der] = x509.load_der_x509_certificate(der)
    return cert


def _load_certificates(signed_data: asn1_cms.SignedData, result: CmsVerification) -> list[tuple]:
    """Return (cryptography cert, asn1crypto cert) pairs; skip what cannot be parsed."""
    pairs: list[tuple] = []
    certs = signed_data["certificates"]
    if certs is None or isinstance(certs, asn1_core.Void):
        return pairs
    for choice in certs:
        if choice.name != "certificate":
            continue  # attribute / other certificate formats are not used by S/MIME signers
        try:
            asn1_cert = choice.chosen
            pairs.append((_load_der_certificate(asn1_cert.dump()), asn1_cert))
        except Exception as exc:  # one bad certificate must not hide the others
            result.errors.append(f"unparsable certificate in SignedData: {exc}")
    return pairs


def _find_signer(sid: asn1_cms.SignerIdentifier, pairs: list[tuple]) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for crypto_cert, asn1_cert in pairs:
            tbs = asn1_cert["tbs_certificate"]
            if tbs["serial_number"].native != serial:
                continue
            # Same bytes first (the usual case, and cheap); else asn1crypto's RFC 5280 name comparison.
            if tbs["issuer"].dump() == issuer.dump() or tbs["issuer"] == issuer:
                return crypto_cert
        return None
    if sid.name == "subject_key_identifier":
        wanted = sid.chosen.native
        for crypto_cert, _ in pairs:
            try:
                ski = crypto_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except Exception:
                continue
            if ski.value.digest == wanted:
                return crypto_cert
    return None


def _normalise_digest(name: str) -> str:
    # asn1crypto already names digests "sha1", "sha256", "sha3_256"...; only fold case.
    return str(name).lower()


def _encapsulated_content(signed_data: asn1_cms.SignedData) -> bytes | None:
    eci = signed_data["encap_content_info"]
    value = eci["content"]
    if value is None or isinstance(value, asn1_core.Void):
        return None
    if isinstance(value, asn1_core.OctetString | asn1_core.ParsableOctetString):
        # __bytes__ merges BER constructed chunks into the octets that were signed.
        return bytes(value)
    return value.contents


def _verify_signature(
    public_key: object,
    algorithm: asn1_algos.SignedDigestAlgorithm,
    sig_name: str,
    digest_name: str,
    signature: bytes,
    data: bytes,
) -> None:
    """Raise InvalidSignature when the signature is wrong, ValueError when it cannot be checked."""
    # A signature OID naming its own hash (sha256WithRSAEncryption) wins over digestAlgorithm.
    try:
        hash_name = algorithm.hash_algo
    except ValueError:
        hash_name = digest_name
    if sig_name in ("ed25519", "ed448"):
        hash_name = digest_name
    hash_name = _normalise_digest(hash_name)
    if hash_name not in _VERIFY_HASHES and sig_name not in ("ed25519", "ed448"):
        raise ValueError(f"unsupported signature hash {hash_name}")

    if sig_name == "rsassa_pkcs1v15":
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("RSA signature but the signer key is not RSA")
        public_key.verify(signature, data, padding.PKCS1v15(), _VERIFY_HASHES[hash_name]())
    elif sig_name == "rsassa_pss":
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("RSA-PSS signature but the signer key is not RSA")
        params = algorithm["parameters"]
        mgf = params["mask_gen_algorithm"]
        mgf_hash = hash_name
        if mgf["algorithm"].native == "mgf1" and mgf["parameters"] is not None:
            mgf_hash = _normalise_digest(mgf["parameters"]["algorithm"].native)
        if mgf_hash not in _VERIFY_HASHES:
            raise ValueError(f"unsupported PSS MGF1 hash {mgf_hash}")
        salt = params["salt_length"].native
        public_key.verify(
            signature,
            data,
            padding.PSS(mgf=padding.MGF1(_VERIFY_HASHES[mgf_hash]()), salt_length=int(salt)),
            _VERIFY_HASHES[hash_name](),
        )
    elif sig_name == "ecdsa":
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ValueError("ECDSA signature but the signer key is not EC")
        public_key.verify(signature, data, ec.ECDSA(_VERIFY_HASHES[hash_name]()))
    elif sig_name == "dsa":
        if not isinstance(public_key, dsa.DSAPublicKey):
            raise ValueError("DSA signature but the signer key is not DSA")
        public_key.verify(signature, data, _VERIFY_HASHES[hash_name]())
    elif sig_name == "ed25519":
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise ValueError("Ed25519 signature but the signer key is not Ed25519")
        public_key.verify(signature, data)
    elif sig_name == "ed448":
        if not isinstance(public_key, ed448.Ed448PublicKey):
            raise ValueError("Ed448 signature but the signer key is not Ed448")
        public_key.verify(signature, data)
    else:
        raise ValueError(f"unsupported signature algorithm {sig_name}")


# ---- fast path for the common shape (one RSA PKCS#1 v1.5 signer, issuerAndSerialNumber, signed
# attributes, DER): read the TLVs directly; anything else falls back to the asn1crypto path below.

_RSA_SIGNATURE_OIDS = {
    bytes.fromhex("2a864886f70d010101"): None,  # rsaEncryption: the digest algorithm decides
    bytes.fromhex("2a864886f70d010105"): "sha1",
    bytes.fromhex("2a864886f70d01010b"): "sha256",
    bytes.fromhex("2a864886f70d01010c"): "sha384",
    bytes.fromhex("2a864886f70d01010d"): "sha512",
}
_DIGEST_OIDS = {_OID_DER[name][2:]: name for name in ("sha1", "sha256", "sha384", "sha512")}
_ATTR_OIDS = {_OID_DER[name][2:]: name for name in ("content_type", "message_digest", "signing_time")}


class _Shape(Exception):
    """Not the common shape: let the general path decide."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at pos; _Shape on anything unusual."""
    if pos + 2 > end:
        raise _Shape
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Shape  # multi-byte tags never occur here
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > end:
            raise _Shape  # indefinite (BER) or absurd lengths
        start, length = pos + 2 + count, int.from_bytes(buf[pos + 2:pos + 2 + count], "big")
    if start + length > end:
        raise _Shape
    return tag, start, start + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in buf[start:end]."""
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = _tlv(buf, pos, end)
        out.append((tag, pos, cs, ce))
        pos = ce
    return out


def _der_time_value(tag: int, text: bytes) -> datetime:
    value = text.decode("ascii")
    if tag == 0x17:
        year = int(value[:2])
        value = ("19" if year >= 50 else "20") + value
    if not value.endswith("Z") or len(value) != 15:
        raise _Shape
    return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


_SIGNER_PARTS: dict[bytes, tuple[x509.Certificate, bytes, int]] = {}


def _signer_parts(cert_der: bytes) -> tuple[x509.Certificate, bytes, int]:
    parts = _SIGNER_PARTS.get(cert_der)
    if parts is None:
        cert = _load_der_certificate(cert_der)
        if len(_SIGNER_PARTS) > 1024:
            _SIGNER_PARTS.clear()
        parts = _SIGNER_PARTS[cert_der] = (cert, cert.issuer.public_bytes(), cert.serial_number)
    return parts


def _fast_verify(der: bytes, detached: bytes | None, result: CmsVerification) -> bool:
    """Fill `result` for the common shape and return True; return False (result untouched) otherwise."""
    try:
        n = len(der)
        tag, cs, ce = _tlv(der, 0, n)
        if tag != 0x30:
            raise _Shape
        ci = _children(der, cs, ce)
        if len(ci) != 2 or der[ci[0][1]:ci[0][3]] != _OID_DER["signed_data"] or ci[1][0] != 0xA0:
            raise _Shape
        tag, sds, sde = _tlv(der, ci[1][2], ci[1][3])
        if tag != 0x30:
            raise _Shape
        sd = _children(der, sds, sde)
        if len(sd) < 4 or sd[0][0] != 0x02 or sd[1][0] != 0x31 or sd[2][0] != 0x30 or sd[-1][0] != 0x31:
            raise _Shape
        encap = _children(der, sd[2][2], sd[2][3])
        if not encap or encap[0][0] != 0x06:
            raise _Shape
        encapsulated = None
        if len(encap) == 2:
            t, c0, c1 = _tlv(der, encap[1][2], encap[1][3])
            if encap[1][0] != 0xA0 or t != 0x04:
                raise _Shape  # constructed OCTET STRING: general path
            encapsulated = der[c0:c1]
        cert_ders = []
        for tag, _start, _cs, cend in sd[3:-1]:
            if tag == 0xA0:
                cert_ders = [der[e[1]:e[3]] for e in _children(der, _cs, cend) if e[0] == 0x30]
            elif tag != 0xA1:
                raise _Shape
        signers = _children(der, sd[-1][2], sd[-1][3])
        if len(signers) != 1:
            raise _Shape
        si = _children(der, signers[0][2], signers[0][3])
        if (signers[0][0] != 0x30 or len(si) < 6 or si[0][0] != 0x02 or si[1][0] != 0x30 or si[2][0] != 0x30
                or si[3][0] != 0xA0 or any(t not in (0xA1,) for t, *_ in si[6:])):
            raise _Shape
        sid = _children(der, si[1][2], si[1][3])
        if len(sid) != 2 or sid[0][0] != 0x30 or sid[1][0] != 0x02:
            raise _Shape
        issuer_der = der[sid[0][1]:sid[0][3]]
        serial = int.from_bytes(der[sid[1][2]:sid[1][3]], "big", signed=True)
        digest_alg = _children(der, si[2][2], si[2][3])
        sig_alg = _children(der, si[4][2], si[4][3])
        if (not digest_alg or digest_alg[0][0] != 0x06 or not sig_alg or sig_alg[0][0] != 0x06
                or si[4][0] != 0x30 or si[5][0] != 0x04
                or any(t != 0x05 or c0 != c1 for t, _, c0, c1 in digest_alg[1:] + sig_alg[1:])):
            raise _Shape  # anything but an OID with absent or NULL parameters
        digest_name = _DIGEST_OIDS.get(der[digest_alg[0][2]:digest_alg[0][3]])
        if digest_name is None:
            raise _Shape
        sig_oid = der[sig_alg[0][2]:sig_alg[0][3]]
        if sig_oid not in _RSA_SIGNATURE_OIDS:
            raise _Shape
        hinted = _RSA_SIGNATURE_OIDS[sig_oid]
        if hinted is not None and hinted != digest_name:
            raise _Shape
        signature = der[si[5][2]:si[5][3]]
        digests, content_types, signing_time = [], [], None
        for _t, _a_start, a_cs, a_ce in _children(der, si[3][2], si[3][3]):
            attr = _children(der, a_cs, a_ce)
            if len(attr) != 2 or attr[0][0] != 0x06 or attr[1][0] != 0x31:
                raise _Shape
            name = _ATTR_OIDS.get(der[attr[0][2]:attr[0][3]])
            values = _children(der, attr[1][2], attr[1][3])
            if name == "message_digest":
                if any(v[0] != 0x04 for v in values):
                    raise _Shape
                digests += [der[v[2]:v[3]] for v in values]
            elif name == "content_type":
                content_types += [der[v[1]:v[3]] for v in values]
            elif name == "signing_time" and len(values) == 1:
                signing_time = _der_time_value(values[0][0], der[values[0][2]:values[0][3]])
        signed_attrs = b"\x31" + der[si[3][1] + 1:si[3][3]]
        certs = [_signer_parts(c) for c in cert_ders]
        signer = next((c for c, iss, ser in certs if ser == serial and iss == issuer_der), None)
        if signer is None:
            raise _Shape  # names may still match after RFC 5280 string preparation: the general path knows
    except (_Shape, ValueError, IndexError):
        return False

    if ce != n:
        result.errors.append(f"{n - ce} bytes of trailing data after the DER")
    result.certificates = [c[0] for c in certs]
    result.encapsulated_content = encapsulated
    result.structure_ok = True
    result.digest_algorithm = digest_name
    result.signature_algorithm = "rsassa_pkcs1v15"
    result.signing_time = signing_time
    result.signer_certificate = signer
    content = detached if detached is not None else encapsulated
    if detached is not None and encapsulated is not None and detached != encapsulated:
        result.errors.append("detached content given but differs from the encapsulated content")
    if not content_types:
        result.errors.append("signed attributes lack contentType (RFC 5652 §5.3)")
    elif content_types != [der[encap[0][1]:encap[0][3]]]:
        result.errors.append("contentType attribute differs from the encapsulated content type")
    if len(digests) != 1:
        result.errors.append(f"expected one messageDigest attribute value, found {len(digests)}")
        result.content_digest_matches = False
    elif content is None:
        result.errors.append("no content to check the messageDigest against (detached signature)")
        result.content_digest_matches = False
    else:
        result.content_digest_matches = hashlib.new(digest_name, content).digest() == digests[0]
        if not result.content_digest_matches:
            result.errors.append("content digest mismatch")
    key = signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        result.errors.append("signature cannot be checked: RSA signature but the signer key is not RSA")
        return True
    try:
        key.verify(signature, signed_attrs, padding.PKCS1v15(), _VERIFY_HASHES[digest_name]())
        result.signature_valid = True
    except InvalidSignature:
        result.signature_valid = False
        result.errors.append("signature value does not verify with the signer certificate")
    return True


def _verify_into(der: bytes, detached_content: bytes | None, result: CmsVerification) -> None:
    if _fast_verify(der, detached_content, result):
        return
    content_info = asn1_cms.ContentInfo.load(der)
    if len(content_info.dump()) != len(der):
        # Some stored .p7m files end with a newline; note it, do not refuse the signature.
        result.errors.append(f"{len(der) - len(content_info.dump())} bytes of trailing data after the DER")
    if content_info["content_type"].native != "signed_data":
        result.errors.append(f"ContentInfo carries {content_info['content_type'].native}, not signedData")
        return
    signed_data = content_info["content"]
    signer_infos = signed_data["signer_infos"]
    pairs = _load_certificates(signed_data, result)
    result.certificates = [pair[0] for pair in pairs]
    result.encapsulated_content = _encapsulated_content(signed_data)
    econtent_type = signed_data["encap_content_info"]["content_type"].native

    if len(signer_infos) != 1:
        result.errors.append(f"expected exactly one SignerInfo, found {len(signer_infos)}")
        return
    result.structure_ok = True
    signer_info = signer_infos[0]

    digest_name = _normalise_digest(signer_info["digest_algorithm"]["algorithm"].native)
    result.digest_algorithm = digest_name
    sig_algorithm = signer_info["signature_algorithm"]
    try:
        sig_name = sig_algorithm.signature_algo
    except ValueError:
        sig_name = None
        result.errors.append(f"unknown signature algorithm {sig_algorithm['algorithm'].dotted}")
    result.signature_algorithm = sig_name

    result.signer_certificate = _find_signer(signer_info["sid"], pairs)
    if result.signer_certificate is None:
        result.errors.append("signer certificate not found in the SignedData")

    content = detached_content if detached_content is not None else result.encapsulated_content
    if (
        detached_content is not None
        and result.encapsulated_content is not None
        and detached_content != result.encapsulated_content
    ):
        result.errors.append("detached content given but differs from the encapsulated content")

    digest_supported = digest_name in _VERIFY_HASHES
    if not digest_supported:
        result.errors.append(f"unsupported digest algorithm {digest_name}")

    signed_attrs = signer_info["signed_attrs"]
    has_signed_attrs = not isinstance(signed_attrs, asn1_core.Void) and len(signed_attrs) > 0
    if has_signed_attrs:
        digests: list[bytes] = []
        content_types: list[str] = []
        for attribute in signed_attrs:
            name = attribute["type"].native
            values = attribute["values"]
            if name == "message_digest":
                digests.extend(value.native for value in values)
            elif name == "content_type":
                content_types.extend(value.native for value in values)
            elif name == "signing_time" and len(values) == 1:
                result.signing_time = values[0].native.astimezone(UTC)
        if not content_types:
            result.errors.append("signed attributes lack contentType (RFC 5652 §5.3)")
        elif content_types != [econtent_type]:
            result.errors.append("contentType attribute differs from the encapsulated content type")
        if len(digests) != 1:
            result.errors.append(f"expected one messageDigest attribute value, found {len(digests)}")
            result.content_digest_matches = False
        elif content is None:
            result.errors.append("no content to check the messageDigest against (detached signature)")
            result.content_digest_matches = False
        elif digest_supported:
            result.content_digest_matches = hashlib.new(digest_name, content).digest() == digests[0]
            if not result.content_digest_matches:
                result.errors.append("content digest mismatch")
        # The stored form is [0] IMPLICIT; the signature covers the same octets tagged as SET.
        raw = bytearray(signed_attrs.dump())
        raw[0] = 0x31
        signed_bytes: bytes | None = bytes(raw)
    else:
        signed_bytes = content
        if content is None:
            result.errors.append("no signed attributes and no content: signature cannot be checked")

    if result.signer_certificate is None or sig_name is None or signed_bytes is None:
        return
    if not digest_supported and sig_name not in ("ed25519", "ed448"):
        return
    try:
        _verify_signature(
            result.signer_certificate.public_key(),
            sig_algorithm,
            sig_name,
            digest_name,
            signer_info["signature"].native,
            signed_bytes,
        )
        result.signature_valid = True
    except InvalidSignature:
        result.signature_valid = False
        result.errors.append("signature value does not verify with the signer certificate")
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        result.errors.append(f"signature cannot be checked: {exc}")


def verify_cms(der: bytes, detached_content: bytes | None = None) -> CmsVerification:
    """Verify a DER CMS SignedData; never raises, reports problems in ``errors``."""
    result = CmsVerification()
    try:
        if not isinstance(der, bytes | bytearray | memoryview):
            result.errors.append("CMS input is not bytes")
            return result
        der = bytes(der)
        if len(der) > MAX_CMS_SIZE:
            result.errors.append(f"CMS structure larger than {MAX_CMS_SIZE} bytes refused")
            return result
        if not der:
            result.errors.append("empty CMS input")
            return result
        if detached_content is not None:
            detached_content = bytes(detached_content)
        _verify_into(der, detached_content, result)
    except RecursionError:
        result.structure_ok = False
        result.errors.append("CMS structure nested too deeply")
    except Exception as exc:  # hostile DER: asn1crypto raises many types lazily
        result.structure_ok = False
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "insufficient data" in message.lower() or "truncat" in message.lower():
            result.errors.append(f"truncated DER: {message}")
        else:
            result.errors.append(f"malformed CMS/DER: {message}")
    return result

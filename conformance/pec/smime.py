"""S/MIME multipart/signed around PEC messages (RFC 5751 section 3.4.3).

The signed bytes are the first body part exactly as on the wire; they are assembled once, signed,
and embedded verbatim, so what is verified is what was signed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from . import cms
from .constants import SMIME_NAME
from .mime import CRLF, MimeNode, b64_body, entity, headers_bytes, new_boundary

PROTOCOLS = ("application/pkcs7-signature", "application/x-pkcs7-signature")
# micalg spellings (SIG-19): RFC 3851 wrote sha1/sha256, RFC 5751 writes sha-1/sha-256.
MICALG_ALIASES = {
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha384": "sha384",
    "sha-384": "sha384",
    "sha512": "sha512",
    "sha-512": "sha512",
    "md5": "md5",
}
MICALG_OF = {"sha1": "sha-1", "sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


def normalise_micalg(value: str | None) -> str | None:
    if value is None:
        return None
    return MICALG_ALIASES.get(value.strip().lower())


def sign_entity(
    outer_fields: list[tuple[str, str]],
    inner: bytes,
    key,
    certificate,
    *,
    digest: str = "sha256",
    protocol: str = PROTOCOLS[0],
    micalg: str | None = None,
    signing_time: datetime | None = None,
    signature_der: bytes | None = None,
) -> bytes:
    """A complete message: outer header fields, then multipart/signed over `inner`.

    `signature_der` lets a caller (a fault, a forgery) put any signature in place of the real one.
    """
    signed = inner[:-2] if inner.endswith(CRLF) else inner
    if signature_der is None:
        signature_der = cms.sign_detached(signed, key, certificate, digest=digest, signing_time=signing_time)
    boundary = new_boundary("sig")
    micalg = micalg or MICALG_OF.get(digest, digest)
    sig_part = entity(
        [
            ("Content-Type", f'{protocol}; name="{SMIME_NAME}"'),
            ("Content-Transfer-Encoding", "base64"),
            ("Content-Disposition", f'attachment; filename="{SMIME_NAME}"'),
            ("Content-Description", "S/MIME Cryptographic Signature"),
        ],
        b64_body(signature_der),
    )
    fields = [
        *outer_fields,
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/signed; protocol="{protocol}"; micalg={micalg}; boundary="{boundary}"'),
    ]
    b = boundary.encode()
    body = (
        b"This is an S/MIME signed message" + CRLF + CRLF
        + b"--" + b + CRLF + signed + CRLF
        + b"--" + b + CRLF + sig_part
        + b"--" + b + b"--" + CRLF
    )
    return headers_bytes(fields) + CRLF + body


@dataclass
class SignedParts:
    """The two parts of a multipart/signed, cut from the raw bytes."""

    protocol: str | None
    micalg: str | None
    content: bytes
    content_node: MimeNode
    signature_node: MimeNode | None
    signature_der: bytes | None
    signature_error: str | None


def split_signed(node: MimeNode) -> SignedParts | None:
    """The signed content and the detached signature of a multipart/signed node, or None."""
    if node.content_type != "multipart/signed" or not node.children:
        return None
    content_node = node.children[0]
    sig_node = node.children[1] if len(node.children) > 1 else None
    der: bytes | None = None
    error: str | None = None
    if sig_node is None:
        error = "multipart/signed has no signature part"
    else:
        body = sig_node.body
        cte = sig_node.transfer_encoding
        if cte == "base64":
            try:
                der = base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
            except (binascii.Error, ValueError) as exc:
                error = f"signature part is not valid base64: {exc}"
        else:
            der = body
        if der is not None and not der:
            error, der = "signature part is empty", None
    return SignedParts(
        protocol=node.param("protocol"),
        micalg=node.param("micalg"),
        content=content_node.raw,
        content_node=content_node,
        signature_node=sig_node,
        signature_der=der,
        signature_error=error,
    )


def outer_fields(raw: bytes) -> list[tuple[str, str]]:
    """The outer header fields of a signed message, unfolded, without MIME-Version and Content-Type
    (which `sign_entity` writes): what re-signing keeps."""
    from .mime import walk_entity

    root = walk_entity(raw)
    return [(n, re.sub(r"\r?\n[ \t]", " ", str(v)).strip()) for n, v in root.headers.items()
            if n.lower() not in ("mime-version", "content-type")]


def _signed_parts(raw: bytes) -> SignedParts:
    from .mime import walk_entity

    signed = split_signed(walk_entity(raw))
    if signed is None:
        raise ValueError("not a multipart/signed message")
    return signed


def resign(raw: bytes, transform, key, certificate, digest: str = "sha256", *,
           signing_time: datetime | None = None) -> bytes:
    """The same message with its signed content passed through `transform` and signed again (by `key`):
    a change made this way is the only defect, the signature is good."""
    signed = _signed_parts(raw)
    return sign_entity(outer_fields(raw), transform(signed.content + CRLF), key, certificate, digest=digest,
                       signing_time=signing_time)


def unsign(raw: bytes) -> bytes:
    """The same message without its S/MIME layer: the outer fields and the signed multipart/mixed body."""
    signed = _signed_parts(raw)
    head = b"".join(f"{n}: {v}".encode() + CRLF for n, v in outer_fields(raw))
    return head + b"MIME-Version: 1.0" + CRLF + signed.content + CRLF

"""Byte-level mutations of valid PEC messages, for the mutation tests (tests/test_mutations.py).

Two families:

* outer header fields (Subject, From, To, Date, Message-ID, the X-* PEC fields, Bcc, Sender, ...) are
  not covered by the S/MIME signature: they are edited directly in the raw bytes;
* everything under the signature (text, daticert.xml, postacert.eml, part names and types, MIME
  structure) is edited inside the signed content, which is then signed again with :func:`resign`, so
  that the intended defect is the only one.

Every edit raises `MutationError` when the bytes it is meant to change are not there, so a mutation
can never silently become a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.pec import cms
from conformance.pec.mime import (
    CRLF,
    b64_body,
    crlf,
    fold,
    headers_bytes,
    parse_headers,
    qp_body,
    split_entity,
    split_multipart,
    walk_entity,
)
from conformance.pec.smime import sign_entity, split_signed

Transform = Callable[[bytes], bytes]
_KEEP = object()


class MutationError(RuntimeError):
    """The bytes a mutation should change are not where it expects them."""


# ---------------------------------------------------------------------------------------------
# Plain byte edits


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the first occurrence of `old`; fail loudly when there is none."""
    if old not in data:
        raise MutationError(f"{old[:80]!r} not found")
    return data.replace(old, new, 1)


def sub_once(data: bytes, pattern: bytes, new: bytes, flags: int = 0) -> bytes:
    """Regex substitution of exactly one match (the first); fail when nothing matches."""
    result, count = re.subn(pattern, new, data, count=1, flags=flags)
    if count != 1:
        raise MutationError(f"pattern {pattern[:80]!r} not found")
    return result


# ---------------------------------------------------------------------------------------------
# Header fields of an entity (the whole message or one MIME part): the block ends at the first CRLFCRLF


def _split_fields(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its continuation lines and CRLF) and the rest (blank line + body)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise MutationError("no CRLF CRLF: not an entity with header fields")
    block, rest = raw[: end + 2], raw[end + 2:]
    fields: list[bytes] = []
    for line in re.split(rb"(?<=\r\n)", block):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, rest


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()




def remove_header(raw: bytes, name: str) -> bytes:
    """Drop every field called `name` (case-insensitive)."""
    fields, rest = _split_fields(raw)
    kept = [f for f in fields if _field_name(f) != name.lower().encode()]
    if len(kept) == len(fields):
        raise MutationError(f"no {name} field to remove")
    return b"".join(kept) + rest


def set_header(raw: bytes, name: str, value: str) -> bytes:
    """Replace the field `name` (the first one; any others are dropped) or, when absent, add it."""
    fields, rest = _split_fields(raw)
    new = fold(name, value)
    key = name.lower().encode()
    out: list[bytes] = []
    done = False
    for f in fields:
        if _field_name(f) == key:
            if not done:
                out.append(new)
                done = True
            continue
        out.append(f)
    if not done:
        return add_header(raw, name, value)
    return b"".join(out) + rest


def add_header(raw: bytes, name: str, value: str) -> bytes:
    """Add a field before MIME-Version (or at the end of the block)."""
    fields, rest = _split_fields(raw)
    new = fold(name, value)
    for i, f in enumerate(fields):
        if _field_name(f) == b"mime-version":
            fields.insert(i, new)
            break
    else:
        fields.append(new)
    return b"".join(fields) + rest


def rename_header(raw: bytes, old: str, new: str) -> bytes:
    """Change a field's name, keeping its value and position."""
    fields, rest = _split_fields(raw)
    key = old.lower().encode()
    for i, f in enumerate(fields):
        if _field_name(f) == key:
            fields[i] = new.encode() + f[len(f.split(b":", 1)[0]):]
            return b"".join(fields) + rest
    raise MutationError(f"no {old} field to rename")


def get_header(raw: bytes, name: str) -> str | None:
    value = parse_headers(split_entity(raw)[0]).get(name)
    return None if value is None else re.sub(r"\r?\n[ \t]", " ", str(value)).strip()


def edit_header_block(raw: bytes, fn: Transform) -> bytes:
    """Apply `fn` to the header block only (e.g. a parameter of the outer Content-Type)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise MutationError("no header block")
    return fn(raw[: end + 2]) + raw[end + 2:]


# ---------------------------------------------------------------------------------------------
# multipart bodies


def _boundary(entity: bytes) -> bytes:
    boundary = parse_headers(split_entity(entity)[0]).get_boundary()
    if not boundary:
        raise MutationError("not a multipart entity")
    return boundary.encode()


def parts(entity: bytes) -> list[bytes]:
    """The body parts of a multipart entity, exactly as cut by the walker (no delimiter line ends)."""
    header_block, body = split_entity(entity)
    spans, _ = split_multipart(body, _boundary(entity).decode())
    return [body[s:e] for s, e in spans]


def edit_parts(entity: bytes, fn: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """Rebuild a multipart entity (same header and boundary) from `fn(parts)`; no preamble, no epilogue,
    no line end after the close delimiter: the form of the signed content that sign_entity produces."""
    header_block, body = split_entity(entity)
    boundary = _boundary(entity)
    spans, _ = split_multipart(body, boundary.decode())
    new = fn([body[s:e] for s, e in spans])
    out = header_block
    for p in new:
        out += b"--" + boundary + CRLF + p + CRLF
    return out + b"--" + boundary + b"--"


def part_name(part: bytes) -> str:
    node = walk_entity(part)
    return (node.filename or node.name or "").lower()


def part_type(part: bytes) -> str:
    return walk_entity(part).content_type


def index_of(ps: list[bytes], name: str) -> int:
    for i, p in enumerate(ps):
        if part_name(p) == name:
            return i
    raise MutationError(f"no part named {name}")


def edit_named_part(inner: bytes, name: str, fn: Transform) -> bytes:
    """Apply `fn` to the whole part (header and body) called `name` in the signed multipart/mixed."""

    def go(ps: list[bytes]) -> list[bytes]:
        i = index_of(ps, name)
        return [*ps[:i], fn(ps[i]), *ps[i + 1:]]

    return edit_parts(inner, go)


def drop_named_part(inner: bytes, name: str) -> bytes:
    def go(ps: list[bytes]) -> list[bytes]:
        i = index_of(ps, name)
        return ps[:i] + ps[i + 1:]

    return edit_parts(inner, go)


def add_part(inner: bytes, part: bytes, position: int | None = None) -> bytes:
    def go(ps: list[bytes]) -> list[bytes]:
        out = list(ps)
        out.insert(len(out) if position is None else position, part)
        return out

    return edit_parts(inner, go)


def replace_body(part: bytes, body: bytes) -> bytes:
    """Same header fields, new body (given as it should travel, with CRLF line ends)."""
    header_block, _ = split_entity(part)
    return header_block + body.removesuffix(CRLF)


def inner_of(raw: bytes) -> bytes:
    """The signed content (the multipart/mixed under the signature), exactly as signed."""
    signed = split_signed(walk_entity(raw))
    if signed is None:
        raise MutationError("not a multipart/signed message")
    return signed.content


def parts_of(raw: bytes) -> list[bytes]:
    """The parts of the signed multipart/mixed of a message (to borrow one for another message)."""
    return parts(inner_of(raw))


# ---------------------------------------------------------------------------------------------
# Re-signing


def signing_time_of(raw: bytes) -> datetime | None:
    signed = split_signed(walk_entity(raw))
    if signed is None or signed.signature_der is None:
        return None
    return cms.verify_cms(signed.signature_der, signed.content).signing_time


def resign(raw: bytes, transform: Transform, key, certificate, digest: str = "sha256", *,
           signing_time=_KEEP, outer: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
           protocol: str | None = None, micalg: str | None = None) -> bytes:
    """`raw` with its signed content replaced by `transform(content)` and signed again with key/certificate.

    The outer header fields are kept (MIME-Version and Content-Type are written anew by sign_entity),
    so are the protocol and, unless told otherwise, the signingTime of the original signature.
    """
    root = walk_entity(raw)
    signed = split_signed(root)
    if signed is None:
        raise MutationError("not a multipart/signed message")
    fields = [(n, str(v)) for n, v in root.headers.items() if n.lower() not in ("mime-version", "content-type")]
    if outer is not None:
        fields = outer(fields)
    when = signing_time_of(raw) if signing_time is _KEEP else signing_time
    content = transform(signed.content)
    return sign_entity(fields, content, key, certificate, digest=digest, signing_time=when,
                       protocol=protocol or signed.protocol or "application/pkcs7-signature", micalg=micalg)


def unsigned(raw: bytes) -> bytes:
    """The same message without S/MIME: outer fields, then the multipart/mixed as the body."""
    root = walk_entity(raw)
    fields = [(n, str(v)) for n, v in root.headers.items() if n.lower() not in ("mime-version", "content-type")]
    return headers_bytes([*fields, ("MIME-Version", "1.0")]) + inner_of(raw) + CRLF


def signature_part_body(raw: bytes) -> bytes:
    root = walk_entity(raw)
    if len(root.children) < 2:
        raise MutationError("no signature part")
    return root.children[1].body


def drop_signature_part(raw: bytes) -> bytes:
    """multipart/signed with the content part only."""
    header_block, body = split_entity(raw)
    boundary = _boundary(raw)
    spans, _ = split_multipart(body, boundary.decode())
    return header_block + body[: spans[0][1]] + CRLF + b"--" + boundary + b"--" + CRLF


def truncate_signature(raw: bytes) -> bytes:
    """Keep the first half of the base64 lines of the .p7s (still valid base64, truncated DER)."""
    body = signature_part_body(raw)
    lines = body.split(CRLF)
    kept = CRLF.join(lines[: len(lines) // 2])
    return replace_once(raw, body, kept + CRLF)


# ---------------------------------------------------------------------------------------------
# daticert.xml, the text part, postacert.eml


def _find_daticert(ps: list[bytes]) -> int:
    for i, p in enumerate(ps):
        if part_name(p) in ("daticert.xml", "certdata.xml") or part_type(p) in ("application/xml", "text/xml"):
            return i
    raise MutationError("no daticert part")


def daticert_xml(raw: bytes) -> bytes:
    ps = parts_of(raw)
    return walk_entity(ps[_find_daticert(ps)]).decoded()


def edit_daticert(inner: bytes, fn: Transform) -> bytes:
    """Decode daticert.xml (base64), apply `fn` to the XML bytes, encode it again (base64, CRLF lines)."""

    def go(ps: list[bytes]) -> list[bytes]:
        i = _find_daticert(ps)
        node = walk_entity(ps[i])
        if node.transfer_encoding != "base64":
            raise MutationError("daticert is not base64")
        new_xml = fn(node.decoded())
        if new_xml == node.decoded():
            raise MutationError("the daticert edit changed nothing")
        return [*ps[:i], replace_body(ps[i], b64_body(new_xml)), *ps[i + 1:]]

    return edit_parts(inner, go)


def xml_replace(old: bytes, new: bytes) -> Transform:
    return lambda xml: replace_once(xml, old, new)


def xml_sub(pattern: bytes, new: bytes) -> Transform:
    return lambda xml: sub_once(xml, pattern, new)


def xml_drop(tag: str) -> Transform:
    """Remove the first element `tag` (empty or with text content) and the white space before it."""
    t = re.escape(tag.encode())
    return xml_sub(rb"\s*<" + t + rb"(\s[^>]*)?(/>|>[^<]*</" + t + rb">)", b"")


def edit_text(inner: bytes, fn: Callable[[str, str], str]) -> bytes:
    """Apply `fn(text, subtype)` to the decoded text/plain and text/html leaves of the first part (kept
    quoted-printable in their charset)."""

    def leaf(part: bytes) -> bytes:
        node = walk_entity(part)
        charset = node.charset or "us-ascii"
        text = node.text()
        new = fn(text, node.headers.get_content_subtype())
        if new == text:
            return part
        return replace_body(part, qp_body(new, charset))

    def first(ps: list[bytes]) -> list[bytes]:
        head = ps[0]
        if walk_entity(head).content_type == "multipart/alternative":
            head = edit_parts(head, lambda alt: [leaf(p) for p in alt])
        else:
            head = leaf(head)
        if head == ps[0]:
            raise MutationError("the text edit changed nothing")
        return [head, *ps[1:]]

    return edit_parts(inner, first)


def edit_text_part_header(inner: bytes, subtype: str, fn: Transform) -> bytes:
    """Apply `fn` to the raw bytes of the text/<subtype> leaf of the first part."""

    def first(ps: list[bytes]) -> list[bytes]:
        def alt(aps: list[bytes]) -> list[bytes]:
            return [fn(p) if part_type(p) == f"text/{subtype}" else p for p in aps]

        return [edit_parts(ps[0], alt), *ps[1:]]

    return edit_parts(inner, first)


def text_to_charset(part: bytes, charset: str) -> bytes:
    """A text leaf re-encoded in another charset, its Content-Type saying so."""
    node = walk_entity(part)
    text = node.text()
    ctype = f'{node.content_type}; charset="{charset}"'
    return set_header(replace_body(part, qp_body(text, charset)), "Content-Type", ctype)


def edit_postacert(inner: bytes, fn: Transform) -> bytes:
    """Apply `fn` to the body of postacert.eml (message/rfc822, 7bit: the carried message itself)."""

    def go(part: bytes) -> bytes:
        node = walk_entity(part)
        if node.transfer_encoding not in ("7bit", "8bit", "binary"):
            raise MutationError("postacert.eml is transfer-encoded")
        return replace_body(part, fn(node.body))

    return edit_named_part(inner, "postacert.eml", go)


def swap_parts(i: int, j: int) -> Callable[[list[bytes]], list[bytes]]:
    def go(ps: list[bytes]) -> list[bytes]:
        out = list(ps)
        out[i], out[j] = out[j], out[i]
        return out

    return go


def to_eight_bit(part: bytes) -> bytes:
    """A base64 part rewritten as Content-Transfer-Encoding: 8bit with its decoded octets."""
    node = walk_entity(part)
    data = crlf(node.decoded())
    return set_header(replace_body(part, data), "Content-Transfer-Encoding", "8bit")






# ---------------------------------------------------------------------------------------------
# Certificates outside what conformance.pec.pki can issue


def custom_certificate(ca, provider_name: str, email: str | None, key, *, not_before: datetime,
                       not_after: datetime, digital_signature: bool = True, key_usage_critical: bool = True,
                       key_usage: bool = True, basic_constraints: bool = False) -> x509.Certificate:
    """A provider certificate like pki.issue_provider_certificate's, with the keyUsage, SAN and
    basicConstraints switches that module does not offer together (SIG-07, SIG-06/SIG-10, SIG-11; the
    DigitPA-era profile of decision D32 combines them)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, provider_name),
            x509.NameAttribute(NameOID.COMMON_NAME, "Posta Certificata"),
        ]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=digital_signature, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=key_usage_critical)
    if email is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def edit_daticert_unsigned(raw: bytes, fn: Transform) -> bytes:
    """Change daticert.xml in place, WITHOUT signing again (the signature no longer matches)."""
    ps = parts_of(raw)
    part = ps[_find_daticert(ps)]
    new = replace_body(part, b64_body(fn(walk_entity(part).decoded())))
    return replace_once(raw, part, new)


# ---------------------------------------------------------------------------------------------
# Signature shapes and line ends (decision D35), truncation


def resign_attached(raw: bytes, key, certificate, digest: str = "sha256") -> bytes:
    """The same message signed again, the .p7s now embedding the content (attached SignedData) although it
    stays inside multipart/signed."""
    root = walk_entity(raw)
    signed = split_signed(root)
    if signed is None:
        raise MutationError("not a multipart/signed message")
    fields = [(n, str(v)) for n, v in root.headers.items() if n.lower() not in ("mime-version", "content-type")]
    der = cms.sign_attached(signed.content, key, certificate, digest=digest, signing_time=signing_time_of(raw))
    return sign_entity(fields, signed.content, key, certificate, digest=digest, signature_der=der,
                       protocol=signed.protocol or "application/pkcs7-signature")


def bare_lf_in_signed_content(raw: bytes, field: bytes = b"Content-Transfer-Encoding: quoted-printable") -> bytes:
    """One CRLF inside the signed content turned into a bare LF after signing (the rest keeps CRLF)."""
    content = inner_of(raw)
    if field + CRLF not in content:
        raise MutationError(f"{field!r} not in the signed content")
    return replace_once(raw, content, content.replace(field + CRLF, field + b"\n", 1))


def lf_line_ends(raw: bytes) -> bytes:
    """The whole file with LF line ends, as a mail store may keep it."""
    return raw.replace(CRLF, b"\n")


def drop_signature_and_close(raw: bytes) -> bytes:
    """multipart/signed cut after its content part: no .p7s part, no close delimiter."""
    header_block, body = split_entity(raw)
    spans, _ = split_multipart(body, _boundary(raw).decode())
    return header_block + body[: spans[0][1]] + CRLF


# ---------------------------------------------------------------------------------------------
# Wrapping by a forwarder or a mailing list (decision D36)


def list_wrap(raw: bytes, *, list_id: str = "Fatture <fatture.lists.example.org>", tag: str = "[fatture]",
              footer: str = "Fatture mailing list\r\nhttps://lists.example.org/fatture\r\n") -> bytes:
    """A list's copy: the signed body kept as the first part of a new multipart/mixed, a footer part after
    it, a subject tag and list fields; the PEC header fields stay on the outer layer."""
    root = walk_entity(raw)
    kept = []
    for name, value in root.headers.items():
        if name.lower() in ("mime-version", "content-type"):
            continue
        kept.append((name, f"{tag} {value}" if name.lower() == "subject" else str(value)))
    kept += [("List-Id", list_id), ("List-Post", "<mailto:fatture@lists.example.org>"),
             ("List-Unsubscribe", "<mailto:fatture-leave@lists.example.org>")]
    signed_part = headers_bytes([("Content-Type", str(root.headers.get("content-type")))]) + CRLF + \
        split_entity(raw)[1].removesuffix(CRLF)
    footer_part = headers_bytes([("Content-Type", 'text/plain; charset="us-ascii"'),
                                 ("Content-Transfer-Encoding", "7bit"),
                                 ("Content-Disposition", "inline")]) + CRLF + footer.encode()
    from conformance.pec.mime import multipart

    return headers_bytes(kept) + multipart("mixed", [signed_part, footer_part],
                                           extra_fields=[("MIME-Version", "1.0")])


def forward_as_attachment(raw: bytes, *, sender: str = "inoltro@example.org", to: str = "archivio@example.org",
                          subject: str = "Fwd: ricevuta") -> bytes:
    """Ordinary mail carrying the PEC message whole as message/rfc822 (a forward, a list that wraps posts)."""
    from conformance.pec.mime import attachment_part, multipart, text_part

    note = text_part("Inoltro la ricevuta.", "plain", "utf-8")
    attached = attachment_part("message/rfc822", "ricevuta.eml", raw, encoding="7bit")
    return headers_bytes([("From", sender), ("To", to), ("Subject", subject),
                          ("Date", "Mon, 23 Nov 2026 10:00:00 +0100"), ("Message-ID", "<fwd.1@example.org>")]) + \
        multipart("mixed", [note, attached], extra_fields=[("MIME-Version", "1.0")])

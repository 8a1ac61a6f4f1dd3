"""Delivery receipt variants: the complete copy and the brief receipt's hashes.

CON-08, CON-12..16, CON-23, ENV-12 and decisions D8 and D29. A receipt's copy can be compared with
the original only when the caller knows it (ValidationContext.carried_original); the hash format is
judged on the receipt alone.
"""

from __future__ import annotations

import hashlib
import re

from ..pec.constants import HASH_SUFFIX, Kind
from ..pec.mime import MimeError, MimeNode, crlf, walk_entity
from .findings import ValidationContext, check, failed, info, passed, warned

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_SMIME_OPAQUE = ("application/pkcs7-mime", "application/x-pkcs7-mime")


def _hash_readings(node: MimeNode) -> dict[str, str]:
    """The SHA-1 of an original part under the readings of D29: (1) body as transferred, (2) whole part
    with its MIME headers, (3) decoded body."""
    readings = {"body as transferred": hashlib.sha1(node.body).hexdigest(),
                "whole part with headers": hashlib.sha1(node.raw).hexdigest(),
                # a copy stored with LF line ends: the body as it travelled had CRLF
                "body as transferred (CRLF)": hashlib.sha1(crlf(node.body)).hexdigest()}
    try:
        readings["decoded body"] = hashlib.sha1(node.decoded()).hexdigest()
    except MimeError:
        pass
    return readings


def _walk_pairs(original: MimeNode, brief: MimeNode, out: list):
    """Pair the parts of the original and of the brief copy, structure for structure."""
    out.append((original, brief))
    if original.maintype == "multipart" and brief.maintype == "multipart":
        if len(original.children) != len(brief.children):
            out.append((original, None))
            return
        for o, b in zip(original.children, brief.children, strict=True):
            _walk_pairs(o, b, out)


def _same(a: bytes, b: bytes) -> bool:
    """Equal bytes, up to line-end style (a copy stored with LF) and trailing line ends."""
    return a.rstrip(b"\r\n") == b.rstrip(b"\r\n") or crlf(a).rstrip(b"\r\n") == crlf(b).rstrip(b"\r\n")


def _is_hash_part(node: MimeNode) -> bool:
    name = node.filename or node.name or ""
    return node.content_type == "text/plain" and name.lower().endswith(HASH_SUFFIX)


@check("receipts.brief-hashes", ["CON-12", "CON-13", "CON-14", "CON-15", "CON-16"])
def check_brief(msg, ctx: ValidationContext):
    """Brief receipt: every named part of the original replaced by its SHA-1 in a .hash part (D8, D29)."""
    if msg.kind is not Kind.CONSEGNA_BREVE or msg.postacert is None:
        return
    try:
        brief = walk_entity(msg.postacert)
    except MimeError as exc:
        yield failed("CON-12", "the brief copy of the original cannot be read", actual=str(exc))
        return
    hash_parts = [n for n in brief.walk() if _is_hash_part(n)]
    for node in brief.walk():
        if node.children or node.content_type != "text/plain" or _is_hash_part(node) or node.body_size > 200:
            continue
        name = node.filename or node.name
        if name and (_HEX40.match(node.body.strip().decode("ascii", "replace"))
                     or _HEX64.match(node.body.strip().decode("ascii", "replace"))):
            # D29 accepts any name ending in .hash; a hash under the original's own name is not one.
            yield failed("CON-13", f"a part holding a hash is named {name!r}, without the .hash suffix",
                         expected=name + HASH_SUFFIX, actual=name, decision="D29")
    for node in hash_parts:
        value = node.text().strip()
        if _HEX64.match(value):
            yield failed("CON-13", "a 64-digit hash: not the RFC's SHA-1", expected="40 hex digits",
                         actual=value, decision="D8")
        elif not _HEX40.match(value):
            yield failed("CON-13", "a .hash part without a 40-digit hex SHA-1", expected="40 hex digits",
                         actual=value[:80], decision="D8")
    if ctx.carried_original is None:
        if hash_parts:
            yield info("CON-13", "hash values not recomputed: the original is not known to the validator")
        return
    try:
        original = walk_entity(ctx.carried_original)
    except MimeError as exc:
        yield failed("CON-12", "the original given for comparison cannot be read", actual=str(exc))
        return
    if original.content_type in _SMIME_OPAQUE:
        ok = _same(msg.postacert, ctx.carried_original)
        yield (passed if ok else failed)("CON-16", "opaque S/MIME original kept intact" if ok else
                                         "opaque S/MIME original altered in the brief receipt")
        return
    pairs: list = []
    _walk_pairs(original, brief, pairs)
    if any(b is None for _, b in pairs) or original.content_type != brief.content_type:
        yield failed("CON-12", "the brief copy does not keep the MIME structure of the original",
                     expected=original.content_type, actual=brief.content_type)
        return
    problems, matched, kinds_hashed = [], 0, set()
    for o, b in pairs:
        if o.maintype == "multipart":
            continue
        parent_signed = o is not original and o.depth == 1 and original.content_type == "multipart/signed"
        named = bool(o.filename or o.name)
        if parent_signed and original.children and o is original.children[-1]:
            if b.raw != o.raw:
                problems.append(("CON-15", "the signature part of a signed original was changed", "FAIL"))
            continue
        if named or o.content_type == "message/rfc822":
            req = "CON-14" if o.content_type == "message/rfc822" else "CON-13"
            if not _is_hash_part(b):
                # CON-12 names the replacement of every named part; CON-13/CON-14 how its hash is made.
                problems.append(((req, "CON-12") if named else req,
                                 f"named part {o.filename or o.name or o.content_type} not replaced by a "
                                 ".hash part", "FAIL"))
                continue
            value = b.text().strip().lower()
            readings = _hash_readings(o)
            hit = [k for k, v in readings.items() if v == value]
            if not hit:
                problems.append((req, f"hash of {o.filename or o.name or 'attached message'} matches no reading "
                                      f"of D29 (expected {readings['body as transferred']})", "FAIL"))
            elif hit == ["decoded body"] and o.transfer_encoding == "base64":
                problems.append((req, "hash computed on the decoded base64 body (the RFC's SHOULD: "
                                      "on the encoded form)", "WARN"))
            else:
                matched += 1
                kinds_hashed.add(req)
            stem = (b.filename or b.name or "")[: -len(HASH_SUFFIX)]
            if o.filename or o.name:
                if stem not in (o.filename, o.name):
                    problems.append(("CON-13", f".hash name {stem!r} differs from {o.filename or o.name!r}",
                                     "INFO"))
        elif _is_hash_part(b):
            problems.append(("CON-12", "an unnamed part was replaced by a hash", "WARN"))
        elif not _same(b.raw, o.raw):
            problems.append(("CON-12", f"unnamed {o.content_type} part changed", "FAIL"))
    for req, message, verdict in problems:
        maker = {"FAIL": failed, "WARN": warned, "INFO": info}[verdict]
        yield maker(req, message, decision="D29")
    if not any(v == "FAIL" for _, _, v in problems):
        # CON-13/CON-14 only where a hash was compared: none compared, nothing seen of how hashes are made.
        judged = ("CON-12", *sorted(kinds_hashed))
        if not kinds_hashed:
            yield info("CON-13", "not applicable: the original has no named part, no hash to compare")
        if original.content_type == "multipart/signed":
            judged = (*judged, "CON-15")  # structure and signature part kept, attachments inside hashed
        yield passed(judged, f"brief copy keeps the structure; {matched} hash(es) verified", decision="D8")


@check("receipts.complete-copy", ["CON-08", "CON-23"])
def check_complete_copy(msg, ctx: ValidationContext):
    """A complete receipt carries the original exactly as the envelope did."""
    if msg.kind is not Kind.CONSEGNA_COMPLETA or msg.postacert is None or ctx.carried_original is None:
        return
    if _same(msg.postacert, ctx.carried_original):
        yield passed(("CON-08", "CON-23"), "complete copy equals the original carried by the envelope")
    else:
        yield failed(("CON-08", "CON-23"), "the receipt's copy differs from the original carried by the envelope",
                     expected=f"{len(ctx.carried_original)} bytes", actual=f"{len(msg.postacert)} bytes")


@check("receipts.envelope-original", ["ENV-12"])
def check_envelope_original(msg, ctx: ValidationContext):
    """The envelope carries the original as the validator was told it was submitted (when told)."""
    if msg.kind is not Kind.BUSTA_TRASPORTO or msg.postacert is None or ctx.carried_original is None:
        return
    if _same(msg.postacert, ctx.carried_original):
        yield passed("ENV-12", "the carried original is byte-identical to the expected one")
    else:
        yield failed("ENV-12", "the carried original differs from the expected one",
                     expected=f"{len(ctx.carried_original)} bytes", actual=f"{len(msg.postacert)} bytes")

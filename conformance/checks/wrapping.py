"""A PEC message wrapped by a forwarder or a mailing list (decision D36).

Two shapes are met: the whole signed message attached as `message/rfc822` to ordinary mail (a forward,
a list that wraps every post), and a list that keeps the signed body as the first part of a new
`multipart/mixed`, adds footers after it and a tag to the subject, leaving the PEC header fields on the
outer layer. In both the signed message is still inside, unchanged: it is what gets judged.
"""

from __future__ import annotations

import re

from ..pec.constants import H_RICEVUTA, H_TRASPORTO, Kind
from ..pec.mime import MimeError, header_lines, parse_headers, split_entity
from ..pec.parse import ParsedMessage

# Fields a mailing list manager adds (RFC 2369, RFC 2919, and common list software).
LIST_FIELDS = frozenset({"list-id", "list-post", "list-unsubscribe", "list-help", "list-archive", "list-owner",
                         "list-subscribe", "mailing-list", "x-mailman-version", "x-beenthere", "x-list"})
_SUBJECT_TAG = re.compile(r"^\s*\[[^\]\r\n]{1,80}\]\s*")
_SUBJECT_TAG_RAW = re.compile(rb"^(Subject:[ \t]*)\[[^\]\r\n]{1,80}\][ \t]*", re.IGNORECASE)
_DROPPED = frozenset({b"content-type", b"mime-version", b"content-transfer-encoding"})


def _is_pec_signed(entity: bytes) -> bool:
    try:
        headers = parse_headers(split_entity(entity)[0])
    except MimeError:
        return False
    return headers.get_content_type() == "multipart/signed" and (
        headers.get(H_TRASPORTO) is not None or headers.get(H_RICEVUTA) is not None)


def unwrap(msg: ParsedMessage) -> tuple[bytes, str] | None:
    """The inner signed PEC message and how it was wrapped, or None when the message is not wrapped."""
    root = msg.root
    if root is None or msg.signed is not None or root.content_type != "multipart/mixed" or not root.children:
        return None
    lists = sorted({n for n in msg.header_names() if n.lower() in LIST_FIELDS})
    tag = _SUBJECT_TAG.match(msg.header("subject") or "")
    said = (f"list fields {', '.join(lists)}" if lists else "") + (f"; subject tag {tag.group(0).strip()!r}"
                                                                   if tag else "")
    if msg.kind is Kind.ORDINARY:
        for child in root.children:
            if child.content_type != "message/rfc822":
                continue
            try:
                inner = child.decoded()
            except MimeError:
                continue
            if _is_pec_signed(inner):
                return inner, "the signed message attached as message/rfc822" + (f"; {said}" if said else "")
    first = root.children[0]
    if first.content_type != "multipart/signed" or not (lists or tag):
        return None
    # The outer header fields (the PEC ones included) over the signed body, without the list's subject tag.
    kept = []
    for line in header_lines(root.src[root.start:root.body_start]):
        name = line.split(b":", 1)[0].strip().lower()
        if name in _DROPPED:
            continue
        kept.append(_SUBJECT_TAG_RAW.sub(rb"\1", line) if name == b"subject" else line)
    inner = b"".join(kept) + b"MIME-Version: 1.0\r\n" + first.raw + b"\r\n"
    if not _is_pec_signed(inner):
        return None
    added = len(root.children) - 1
    return inner, f"the signed body kept as the first part, {added} part(s) added after it; {said.lstrip('; ')}"

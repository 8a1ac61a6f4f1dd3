"""Byte-exact MIME assembly and walking.

PEC signs the first part of a multipart/signed exactly as it stands on the wire, and requires the
original message to travel unmodified inside postacert.eml. The stdlib generators refold headers
and re-encode parts, so entities are assembled and cut here from raw bytes; the stdlib parser is
only used to read header fields.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import secrets
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from email.utils import unquote as email_unquote

from .constants import MAX_HEADER_LINE, MAX_MIME_DEPTH

CRLF = b"\r\n"
MAX_PARTS = 2000


class MimeError(ValueError):
    """The bytes break a bound of the walker (depth, header length, part count)."""


# ---------------------------------------------------------------------------------------------
# Assembly


def new_boundary(tag: str = "pec") -> str:
    return f"----=_{tag}_{secrets.token_hex(12)}"


def encode_header_value(value: str, name: str = "Subject") -> str:
    """RFC 2047-encode a header value when it is not plain ASCII (already folded with CRLF)."""
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def fold(name: str, value: str) -> bytes:
    """One header field, folded at ', ' or spaces so that lines stay under 78 characters when possible."""
    line = f"{name}: {value}"
    if len(line) <= 78 or "\r\n" in value:
        return line.encode("ascii", "surrogateescape") + CRLF
    out: list[str] = []
    current = f"{name}:"
    for token in re.split(r"(?<=,) |(?<=[^,]) ", value):
        if len(current) + 1 + len(token) > 78 and current.strip() != f"{name}:":
            out.append(current)
            current = " " + token
        else:
            current = f"{current} {token}"
    out.append(current)
    return "\r\n".join(out).encode("ascii", "surrogateescape") + CRLF


def headers_bytes(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(fold(n, v) for n, v in fields)


def entity(fields: list[tuple[str, str]], body: bytes) -> bytes:
    """A MIME entity: header fields, blank line, body (which must already use CRLF)."""
    return headers_bytes(fields) + CRLF + body


def multipart(subtype: str, parts: list[bytes], *, boundary: str | None = None,
              extra_fields: list[tuple[str, str]] = (), preamble: bytes = b"") -> bytes:
    boundary = boundary or new_boundary(subtype[:3])
    fields = [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"'), *extra_fields]
    body = preamble
    for p in parts:
        body += b"--" + boundary.encode() + CRLF + p
        if not p.endswith(CRLF):
            body += CRLF
    body += b"--" + boundary.encode() + b"--" + CRLF
    return entity(fields, body)


def crlf(data: bytes) -> bytes:
    """Canonical CRLF line ends (bare LF and bare CR become CRLF)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def b64_body(data: bytes) -> bytes:
    return crlf(base64.encodebytes(data))


def qp_body(text: str, charset: str) -> bytes:
    raw = crlf(text.encode(charset, "replace"))
    return crlf(quopri.encodestring(raw.replace(b"\r\n", b"\n")))


def text_part(text: str, subtype: str, charset: str) -> bytes:
    return entity(
        [
            ("Content-Type", f'text/{subtype}; charset="{charset}"'),
            ("Content-Transfer-Encoding", "quoted-printable"),
            ("Content-Disposition", "inline"),
        ],
        qp_body(text, charset),
    )


def attachment_part(content_type: str, name: str, data: bytes, *, disposition: str = "inline",
                    encoding: str = "base64") -> bytes:
    if encoding == "base64":
        body = b64_body(data)
    else:
        # The line end before the next boundary belongs to the boundary: add one so that the part's
        # content is `data` to the last byte (a carried original must travel unmodified).
        body = data + CRLF
    return entity(
        [
            ("Content-Type", f'{content_type}; name="{name}"'),
            ("Content-Transfer-Encoding", encoding),
            ("Content-Disposition", f'{disposition}; filename="{name}"'),
        ],
        body,
    )


# ---------------------------------------------------------------------------------------------
# Walking


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _body_start(src: bytes, start: int, end: int) -> int:
    """Offset just after the empty line that ends the header block of the entity src[start:end]."""
    m = _BLANK_LINE.search(src, start, end)
    return end if m is None else m.end()


def split_entity(raw: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line (CRLF or bare LF); returns (header block incl. its end, body)."""
    at = _body_start(raw, 0, len(raw))
    return raw[:at], raw[at:]


def header_lines(block: bytes) -> list[bytes]:
    """The header fields of a block as raw bytes, each with its folded continuation lines."""
    fields: list[bytes] = []
    for line in re.split(rb"(?<=\n)", block):
        if not line.strip():
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


_LONG_LINE = re.compile(rb"[^\n]{%d}" % (MAX_HEADER_LINE + 1))
MAX_HEADER_FIELDS = 10_000


def header_lines_too_long(header_block: bytes) -> bool:
    """Whether a physical header line exceeds the bound (checked in C: the block may be huge)."""
    return _LONG_LINE.search(header_block) is not None


_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def parse_headers(header_block: bytes) -> Message:
    """Header fields into a compat32 Message, values exactly as the stdlib parser would give them.

    Cut by hand (the stdlib FeedParser costs more than everything else the validator does); the
    returned object is the stdlib's, so the field accessors are the standard ones. Parsing stops
    at the first line that is neither a field nor a continuation, as the stdlib does.
    """
    if header_lines_too_long(header_block):
        raise MimeError(f"a header line is longer than {MAX_HEADER_LINE} bytes")
    if header_block.count(b"\n") > MAX_HEADER_FIELDS * 4:
        raise MimeError(f"more than {MAX_HEADER_FIELDS} header lines")
    text = header_block.decode("ascii", "surrogateescape")
    fields: list[tuple[str, str]] = []
    name: str | None = None
    value: list[str] = []
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("From "):
        lines = lines[1:]  # an mbox separator line, as the stdlib parser skips it
    for line in lines:
        if line[:1] in (" ", "\t") and name is not None:
            value.append(line)
            continue
        if name is not None:
            fields.append((name, "".join(value).rstrip("\r\n")))
            name = None
        if not line.strip("\r\n"):
            break
        head, sep, rest = line.partition(":")
        if not sep or not _FIELD_NAME.fullmatch(head.rstrip(" \t")):
            break
        name, value = head.rstrip(" \t"), [rest.lstrip(" \t")]
        if len(fields) >= MAX_HEADER_FIELDS:
            raise MimeError(f"more than {MAX_HEADER_FIELDS} header fields")
    if name is not None:
        fields.append((name, "".join(value).rstrip("\r\n")))
    msg = Message(policy=compat32)
    msg._headers = fields  # the stdlib parser fills the same list the same way (compat32 header_source_parse)
    return msg


def decode_text(value: str | None) -> str:
    """Decode RFC 2047 words of a header value; never raises."""
    if value is None:
        return ""
    value = str(value)
    if value.isascii() and "=?" not in value:
        return value  # no encoded word and nothing undecodable: the stdlib would return it unchanged
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded words: keep the raw text
        return str(value)


def split_multipart(body: bytes, boundary: str, begin: int = 0,
                    end: int | None = None) -> tuple[list[tuple[int, int]], bool]:
    """Offsets (start, end) of each body part inside `body[begin:end]` (offsets into `body`), and whether
    the close delimiter was found.

    A part runs from just after its delimiter line to just before the line end that precedes the
    next delimiter line (RFC 2046 section 5.1.1): exactly the bytes S/MIME signs. Without a close
    delimiter the last part runs to the end of the body.
    """
    delim = b"--" + boundary.encode("ascii", "replace")
    spans: list[tuple[int, int]] = []
    start: int | None = None
    pos = begin
    n = len(body) if end is None else end
    while True:
        at = body.find(delim, pos, n)
        if at < 0:
            # No close delimiter (a truncated message): the last part runs to the end, so that what is
            # there is still judged.
            if start is not None and start < n:
                spans.append((start, n))
            return spans, False
        pos = at + len(delim)
        # A delimiter starts a line: at the very beginning or right after LF.
        if at != begin and body[at - 1:at] != b"\n":
            continue
        closing = body[pos:pos + 2] == b"--"
        after = pos + 2 if closing else pos
        eol = after
        while eol < n and body[eol] in (0x20, 0x09):  # transport padding
            eol += 1
        if eol < n and body[eol:eol + 1] not in (b"\r", b"\n"):
            continue  # the boundary string followed by more text: not a delimiter line
        line_start = at
        if at >= 1 and body[at - 1:at] == b"\n":
            line_start = at - 2 if at >= 2 and body[at - 2:at - 1] == b"\r" else at - 1
        if start is not None:
            spans.append((start, line_start))
            if len(spans) > MAX_PARTS:
                raise MimeError(f"more than {MAX_PARTS} MIME parts")
        if closing:
            return spans, True
        if body[eol:eol + 2] == b"\r\n":
            start = eol + 2
        elif eol < n:
            start = eol + 1
        else:
            start = n
        pos = start


_UNSET = object()


def _split_params(value: str) -> list[str]:
    """The parameter segments of a field value, cut as email.message._parseparam cuts them."""
    s = ";" + value
    out = []
    while s[:1] == ";":
        s = s[1:]
        end = s.find(";")
        while end > 0 and (s.count('"', 0, end) - s.count('\\"', 0, end)) % 2:
            end = s.find(";", end + 1)
        if end < 0:
            end = len(s)
        f = s[:end]
        if "=" in f:
            i = f.index("=")
            f = f[:i].strip().lower() + "=" + f[i + 1:].strip()
        out.append(f.strip())
        s = s[end:]
    return out


def field_params(headers: Message, header: str = "content-type") -> list[tuple[str, object]]:
    """`headers.get_params(header=header)[1:]` (the parameters, unquoted), computed directly when no RFC 2231
    parameter is present; the stdlib builds, quotes and unquotes each value again on every call."""
    value = headers.get(header)
    if value is None:
        return []
    text = str(value)
    if "*" in text:  # RFC 2231 (name*, name*0...): the stdlib's own decoding
        return (headers.get_params(header=header) or [])[1:]
    out: list[tuple[str, object]] = []
    for segment in _split_params(text)[1:]:
        name, sep, val = segment.partition("=")
        out.append((name.strip(), email_unquote(val.strip())) if sep else (segment.strip(), ""))
    return out


@dataclass
class MimeNode:
    """One MIME entity of a message, with its parsed header fields.

    Every node points into the one buffer of the whole message (`src`, offsets): a 40 MB attachment is
    not copied once per MIME level; `raw` and `body` are cut when asked for.
    """

    src: bytes
    start: int
    body_start: int
    end: int
    headers: Message
    depth: int
    children: list[MimeNode] = field(default_factory=list)
    closed: bool = True
    # Read once: every walk and check asks for them (plain attributes, cheaper than cached properties).
    content_type: str = ""
    maintype: str = ""
    _params: dict = field(default_factory=dict, repr=False)
    _decoded_params: dict = field(default_factory=dict, repr=False)
    _cte: str | None = field(default=None, repr=False)
    _disposition: object = field(default=_UNSET, repr=False)

    def __post_init__(self) -> None:
        if not self.content_type:
            self.content_type = self.headers.get_content_type()
        if not self.maintype:
            self.maintype = self.content_type.split("/")[0]

    @property
    def raw(self) -> bytes:
        if self.start == 0 and self.end == len(self.src):
            return self.src
        return self.src[self.start:self.end]

    @property
    def body(self) -> bytes:
        return self.src[self.body_start:self.end]

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    def _param_tables(self, header: str) -> tuple[dict, dict]:
        """The parameters of a field, parsed once (the stdlib parses the whole field on every get_param):
        by last occurrence (what `param` has always answered) and by first (what get_param answers)."""
        tables = self._params.get(header)
        if tables is None:
            items = field_params(self.headers, header)
            first: dict = {}
            for k, v in items:
                first.setdefault(k.lower(), v)
            tables = ({k.lower(): v for k, v in items}, first)
            self._params[header] = tables
        return tables

    @property
    def boundary(self) -> str | None:
        """As Message.get_boundary, from the parsed parameters."""
        value = self._param_tables("content-type")[1].get("boundary")
        return None if value is None else collapse_rfc2231_value(value).rstrip()

    def param(self, name: str, header: str = "content-type") -> str | None:
        key = (header, name.lower())
        decoded = self._decoded_params.get(key, _UNSET)
        if decoded is _UNSET:
            decoded = self._decoded_params[key] = self._param(name, header)
        return decoded

    def _param(self, name: str, header: str) -> str | None:
        value = self._param_tables(header)[0].get(name.lower())
        if value is None or value is False:
            return None
        if isinstance(value, tuple):  # RFC 2231
            try:
                return bytes(value[2], "latin-1").decode(value[0] or "ascii", "replace")
            except (LookupError, TypeError):
                return str(value[2])
        return decode_text(value)

    @property
    def filename(self) -> str | None:
        return self.param("filename", "content-disposition")

    @property
    def name(self) -> str | None:
        return self.param("name")

    @property
    def disposition(self) -> str | None:
        if self._disposition is _UNSET:
            value = self.headers.get("content-disposition")
            self._disposition = str(value).split(";")[0].strip().lower() if value else None
        return self._disposition

    @property
    def transfer_encoding(self) -> str:
        if self._cte is None:
            self._cte = str(self.headers.get("content-transfer-encoding", "7bit")).strip().lower()
        return self._cte

    @property
    def charset(self) -> str | None:
        """As Message.get_content_charset (lower-cased), from the parsed parameters."""
        cs = self._param_tables("content-type")[1].get("charset")
        if cs is None:
            return None
        if isinstance(cs, tuple):  # RFC 2231
            try:
                cs = str(cs[2].encode("raw-unicode-escape"), cs[0] or "us-ascii")
            except (LookupError, UnicodeError):
                cs = cs[2]
        try:
            cs.encode("us-ascii")
        except UnicodeError:
            return None
        return cs.lower() or None

    def decoded(self) -> bytes:
        """Body with the transfer encoding removed; raises MimeError on broken base64."""
        cte = self.transfer_encoding
        if cte == "base64":
            try:
                return base64.b64decode(re.sub(rb"\s+", b"", self.body), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise MimeError(f"broken base64: {exc}") from None
        if cte == "quoted-printable":
            return quopri.decodestring(self.body)
        return self.body

    def text(self) -> str:
        data = self.decoded()
        charset = self.charset or "us-ascii"
        try:
            return data.decode(charset, "replace")
        except LookupError:
            return data.decode("latin-1", "replace")

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def leaves(self):
        if self.children:
            for c in self.children:
                yield from c.leaves()
        elif self.maintype != "multipart":
            yield self


def walk_entity(raw: bytes, depth: int = 0) -> MimeNode:
    """Cut an entity and, for multiparts, its children recursively (message/rfc822 stays a leaf)."""
    return _walk(raw, 0, len(raw), depth)


def _walk(src: bytes, start: int, end: int, depth: int) -> MimeNode:
    if depth > MAX_MIME_DEPTH:
        raise MimeError(f"MIME nesting deeper than {MAX_MIME_DEPTH}")
    body_start = _body_start(src, start, end)
    headers = parse_headers(src[start:body_start])
    node = MimeNode(src=src, start=start, body_start=body_start, end=end, headers=headers, depth=depth)
    if node.maintype == "multipart":
        boundary = node.boundary
        if boundary:
            spans, closed = split_multipart(src, boundary, body_start, end)
            node.closed = closed
            node.children = [_walk(src, s, e, depth + 1) for s, e in spans]
    return node


def contains(raw: bytes, needle: bytes, *, depth: int = 0, root: MimeNode | None = None, max_depth: int = 8) -> bool:
    """Whether `needle` occurs in the message as transferred or in any decoded part, attached messages
    included (how the test virus signature travels: base64 attachments, forwarded messages)."""
    if needle in raw:
        return True
    if depth > max_depth:
        return False
    try:
        root = root or walk_entity(raw)
    except MimeError:
        return False
    for leaf in root.leaves():
        try:
            body = leaf.decoded()
        except MimeError:
            continue
        if needle in body:
            return True
        if leaf.content_type == "message/rfc822" and contains(body, needle, depth=depth + 1, max_depth=max_depth):
            return True
    return False

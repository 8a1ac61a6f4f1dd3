"""MIME structure of PEC messages: FMT-01..06, FMT-25, the original inside or not, ANO-10."""

from __future__ import annotations

import re

from ..pec.constants import (
    DATICERT_NAME,
    DATICERT_RFC_NAME,
    ORIGINAL_FORBIDDEN,
    ORIGINAL_REQUIRED,
    POSTACERT_NAME,
    TEXT_CHARSET,
    TIPO_BREVE,
    TIPO_SINTETICA,
    Kind,
)
from ..pec.mime import MimeError, parse_headers, split_entity
from ..pec.parse import ParsedMessage, address_list
from .findings import ValidationContext, check, failed, info, passed, warned

# Which requirement a missing or present original breaks, per kind (section 2.12 of the catalogue).
ORIGINAL_REQ = {
    Kind.BUSTA_TRASPORTO: "ENV-12",
    Kind.CONSEGNA_COMPLETA: "CON-08",
    Kind.CONSEGNA_BREVE: "CON-12",
    Kind.BUSTA_ANOMALIA: "ANO-02",
    Kind.NON_ACCETTAZIONE: "ACC-11",
    Kind.NON_ACCETTAZIONE_VIRUS: "VIR-03",
    Kind.RILEVAZIONE_VIRUS: "VIR-09",
    Kind.CONSEGNA_SINTETICA: "CON-17",
    Kind.PREAVVISO_12H: "TMO-10",
    Kind.MANCATA_CONSEGNA_24H: "TMO-10",
}


def _generated(msg: ParsedMessage) -> bool:
    """Decision D34: the format rules bind what a provider generates, not a user's message or ordinary mail."""
    return msg.kind is not Kind.ORDINARY


@check("structure.mixed", ["FMT-01"])
def check_mixed(msg: ParsedMessage, ctx: ValidationContext):
    """The signed body is multipart/mixed whose first part is the human-readable text."""
    body = msg.body
    if body is None or not _generated(msg):
        return
    if body.content_type != "multipart/mixed":
        yield failed("FMT-01", "the body under the signature is not multipart/mixed",
                     expected="multipart/mixed", actual=body.content_type)
        return
    if not body.closed:
        yield failed("FMT-01", "multipart/mixed has no closing boundary (truncated message?)")
    first = body.children[0] if body.children else None
    if first is None or first.maintype not in ("text", "multipart") or first.content_type == "message/rfc822":
        yield failed("FMT-01", "the first part is not the human-readable text",
                     expected="text/plain or multipart/alternative",
                     actual=first.content_type if first else "no parts")
    else:
        yield passed("FMT-01", "multipart/mixed with the text first")


@check("structure.text-part", ["FMT-03", "FMT-04", "FMT-25"])
def check_text_part(msg: ParsedMessage, ctx: ValidationContext):
    """Text part: ISO-8859-1 text/plain or multipart/alternative of text/plain and text/html."""
    body = msg.body
    if body is None or not body.children or not _generated(msg):
        return
    first = body.children[0]
    if first.content_type == "multipart/alternative":
        types = [c.content_type for c in first.children]
        if sorted(types) != ["text/html", "text/plain"]:
            yield failed("FMT-04", "multipart/alternative must hold exactly one text/plain and one text/html",
                         expected="text/plain + text/html", actual=", ".join(types) or "nothing")
        else:
            yield passed("FMT-04", "multipart/alternative of text/plain and text/html")
    elif first.content_type == "text/plain":
        yield warned("FMT-25", "text is a single text/plain part; deployed providers send "
                               "multipart/alternative (text/plain + text/html)",
                     expected="multipart/alternative", actual="text/plain")
    elif first.maintype == "text" or first.maintype == "multipart":
        yield failed("FMT-03", "the text part is neither text/plain nor multipart/alternative",
                     actual=first.content_type)
        return
    for leaf in msg.text_nodes:
        if leaf.maintype != "text":
            continue
        charset = leaf.charset or "us-ascii"
        if charset not in (TEXT_CHARSET, "latin1", "latin-1", "iso8859-1", "us-ascii"):
            yield failed("FMT-03", f"{leaf.content_type} charset is not ISO-8859-1",
                         expected=TEXT_CHARSET, actual=charset)
        else:
            yield passed("FMT-03", f"{leaf.content_type} charset {charset}")
        if leaf.transfer_encoding != "quoted-printable" or (leaf.disposition not in (None, "inline")):
            yield warned("FMT-25", f"{leaf.content_type} is not quoted-printable and inline as deployed",
                         expected="quoted-printable, inline",
                         actual=f"{leaf.transfer_encoding}, {leaf.disposition or 'no disposition'}")
        elif first.content_type == "multipart/alternative":
            yield passed("FMT-25", f"{leaf.content_type}: quoted-printable, inline, in multipart/alternative")


_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
# Decision D33: inline style (a <style> block, a style attribute) is passive unless its CSS loads or runs
# something; elements that fetch or run, event handlers and resource references are not. The HTML is
# lower-cased once and searched with patterns that begin with a literal (fast in the regex engine).
_ACTIVE_TAG = re.compile(r"<\s*(?:script|object|embed|applet|i?frame|link|img|audio|video|source|base|"
                         r"meta\s[^>]*refresh)\b")
_ACTIVE_LITERALS = ("cid:", "javascript:", "@import", "-moz-binding")
_ACTIVE_PATTERNS = (re.compile(r"url\s*\("), re.compile(r"expression\s*\("), re.compile(r"behavior\s*:"),
                    re.compile(r"src\s*="), re.compile(r"href\s*=\s*[\"']?(?!mailto:)"), re.compile(r"on[a-z]+\s*="))
_WORD_START = frozenset(" \t\r\n\"'/;<")  # an attribute name starts after one of these
_STYLE = re.compile(r"<\s*style\b|style\s*=")


def _active(html: str) -> str | None:
    """The first reference or piece of active content in the HTML text, or None."""
    low = html.lower()
    m = _ACTIVE_TAG.search(low)
    if m:
        return m.group(0)
    for literal in _ACTIVE_LITERALS:
        if literal in low:
            return literal
    for pattern in _ACTIVE_PATTERNS:
        for m in pattern.finditer(low):
            attribute = pattern.pattern[0] in "soh"  # src=, href=, on...=: only as an attribute name
            if not attribute or m.start() == 0 or low[m.start() - 1] in _WORD_START:
                return m.group(0)
    return None


@check("structure.html-content", ["FMT-04"])
def check_html(msg: ParsedMessage, ctx: ValidationContext):
    """The HTML text references no resource and has no active content."""
    if msg.text_html is None or not _generated(msg):
        return
    found = _active(msg.text_html)
    if found:
        yield failed("FMT-04", "the HTML text references a resource or holds active content",
                     expected="no scripts, objects, event handlers, external/cid: references or CSS that loads "
                              "something", actual=found[:60], decision="D33")
    elif "style" in msg.text_html.lower() and _STYLE.search(msg.text_html.lower()):
        yield passed("FMT-04", "the HTML text is self-contained and passive (inline style that references "
                               "nothing)", decision="D33")
    else:
        yield passed("FMT-04", "the HTML text is self-contained and passive")


@check("structure.seven-bit", ["FMT-02"])
def check_seven_bit(msg: ParsedMessage, ctx: ValidationContext):
    """Every generated part with octets above 127 is quoted-printable or base64."""
    if msg.body is None or not _generated(msg):
        return
    bad = []
    for leaf in msg.body.leaves():
        if leaf is msg.postacert_node:
            continue  # the original travels unmodified (ENV-12); its encoding is the client's
        if leaf.transfer_encoding not in ("base64", "quoted-printable") and _EIGHT_BIT.search(leaf.body):
            bad.append(f"{leaf.content_type} ({leaf.transfer_encoding})")
    if bad:
        yield failed("FMT-02", "parts with 8-bit octets are not transfer-encoded", expected="quoted-printable or "
                     "base64", actual="; ".join(bad))
    else:
        yield passed("FMT-02", "every generated part is 7-bit safe")


@check("structure.daticert-part", ["FMT-06", "ANO-10"], needs_body=True)
def check_daticert_part(msg: ParsedMessage, ctx: ValidationContext):
    """The certification data travel as application/xml named daticert.xml (none in the anomaly envelope)."""
    node = msg.daticert_node
    if msg.kind is Kind.BUSTA_ANOMALIA:
        if node is not None:
            yield failed("ANO-10", "the anomaly envelope carries an XML part", expected="no daticert",
                         actual=node.filename or node.name or node.content_type)
        return
    if msg.kind in (Kind.ORDINARY, Kind.UNKNOWN):
        return
    if node is None:
        yield failed("FMT-06", "no certification-data part", expected=DATICERT_NAME, actual="missing",
                     decision="D1")
        return
    names = {(node.filename or "").lower(), (node.name or "").lower()} - {""}
    if DATICERT_NAME in names:
        yield passed("FMT-06", "daticert.xml present", decision="D1")
    elif DATICERT_RFC_NAME in names:
        yield warned("FMT-06", "certification data named certdata.xml (the RFC's English name)",
                     expected=DATICERT_NAME, actual=DATICERT_RFC_NAME, decision="D1")
    else:
        yield failed("FMT-06", "the XML part is not named daticert.xml", expected=DATICERT_NAME,
                     actual=", ".join(sorted(names)) or "no name", decision="D1")
    if node.content_type != "application/xml":
        yield warned("FMT-06", "certification data not typed application/xml", expected="application/xml",
                     actual=node.content_type)


@check("structure.original", ["ENV-12", "CON-08", "CON-12", "CON-17", "ANO-02", "ACC-11", "VIR-03",
                              "VIR-09", "TMO-10", "FMT-05"])
def check_original(msg: ParsedMessage, ctx: ValidationContext):
    """The original message is attached where the kind requires it and absent where it forbids it."""
    node = msg.postacert_node
    kind = msg.kind
    if ctx.expected_kind in ORIGINAL_REQUIRED and node is None:
        # Without its original a complete or brief receipt reads as a concise one: judge the expected kind.
        kind = ctx.expected_kind
    req = ORIGINAL_REQ.get(kind)
    if kind in ORIGINAL_REQUIRED:
        if node is None:
            yield failed(req, f"{kind} must carry the original message as postacert.eml",
                         expected="message/rfc822 postacert.eml", actual="missing")
            return
        yield passed(req, "the original message is attached")
        names = {(node.filename or "").lower(), (node.name or "").lower()} - {""}
        if node.content_type != "message/rfc822":
            yield failed("FMT-05", "the original is not a message/rfc822 part", expected="message/rfc822",
                         actual=node.content_type)
        elif kind is not Kind.BUSTA_ANOMALIA and POSTACERT_NAME not in names:
            yield failed("FMT-05", "the original part is not named postacert.eml", expected=POSTACERT_NAME,
                         actual=", ".join(sorted(names)) or "no name")
        else:
            yield passed("FMT-05", "original attached as message/rfc822")
    elif kind in ORIGINAL_FORBIDDEN and node is not None:
        yield failed(req, f"{kind} must not include the original message", expected="no postacert.eml",
                     actual=node.filename or node.name or node.content_type)
    elif kind is Kind.CONSEGNA_SINTETICA:
        yield from _concise_or_lost_original(msg, ctx)
    elif kind in ORIGINAL_FORBIDDEN:
        yield passed(req, "no original message, as required")
    elif node is not None and kind not in (Kind.ORDINARY, Kind.UNKNOWN):
        yield info("FMT-05", f"{kind} carries the original message (neither required nor forbidden)",
                   decision="D9")


def _concise_or_lost_original(msg: ParsedMessage, ctx: ValidationContext):
    """A delivery receipt without an original: a concise receipt (all recipients when the sender asked for
    sintetica, else a Cc recipient, D5) or a complete/brief receipt that lost its original. Only the original's
    To and Cc (or the run's records, via the expected kind) tell them apart."""
    d = msg.daticert
    asked = d.ricevuta if d is not None else None
    if asked == TIPO_SINTETICA:
        yield passed("CON-17", "concise receipt, as the sender asked (ricevuta tipo=sintetica)", decision="D5")
        return
    recipient = (d.consegna or "").lower() if d is not None else ""
    headers = None
    if ctx.carried_original is not None:
        try:
            headers = parse_headers(split_entity(ctx.carried_original)[0])
        except MimeError:
            headers = None
    if headers is None or not recipient:
        yield info(("CON-08", "CON-17"), "no original attached: a concise receipt for a Cc recipient and a complete "
                                         "or brief receipt that lost its original cannot be told apart without the "
                                         "original (--original) or the run's records", decision="D5")
        return
    to = set(address_list([str(v) for v in headers.get_all("to") or []]))
    cc = set(address_list([str(v) for v in headers.get_all("cc") or []]))
    if recipient in cc and recipient not in to:
        yield passed("CON-17", f"concise receipt for the Cc recipient {recipient}", decision="D5")
        return
    req = "CON-12" if asked == TIPO_BREVE else "CON-08"
    where = "a To recipient" if recipient in to else "a recipient neither in To nor in Cc"
    yield failed(req, f"the receipt for {where} ({recipient}) carries no original: a {asked or 'completa'} "
                      "receipt must attach it", expected="postacert.eml", actual="missing",
                 decision="D28" if recipient not in to else "D5")


@check("structure.anomaly-parts", ["ANO-10"])
def check_anomaly_parts(msg: ParsedMessage, ctx: ValidationContext):
    """The anomaly envelope holds only the text and the received message."""
    if msg.kind is not Kind.BUSTA_ANOMALIA or msg.body is None:
        return
    extra = [c.content_type for c in msg.body.children[1:] if c is not msg.postacert_node]
    if extra:
        yield failed("ANO-10", "the anomaly envelope carries parts besides the text and the received message",
                     expected="text + message/rfc822", actual=", ".join(extra))
    else:
        yield passed("ANO-10", "only the text and the received message")

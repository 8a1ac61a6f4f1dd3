"""Any message bytes -> a typed PEC message (kind, PEC headers, daticert, original, signature).

Nothing the message says is trusted or followed: no network, no entity expansion, bounded sizes
and depth. Problems become `problems` on the result (turned into ERROR or FAIL findings by the
validator), never exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from lxml import etree

from . import cms
from . import daticert as dc
from .constants import (
    DATICERT_NAME,
    DATICERT_RFC_NAME,
    H_RICEVUTA,
    H_TRASPORTO,
    H_VERIFICA_SICUREZZA,
    MAX_MESSAGE_BYTES,
    POSTACERT_NAME,
    RICEVUTA_ACCETTAZIONE,
    RICEVUTA_AVVENUTA_CONSEGNA,
    RICEVUTA_ERRORE_CONSEGNA,
    RICEVUTA_NON_ACCETTAZIONE,
    RICEVUTA_PREAVVISO,
    RICEVUTA_PRESA_IN_CARICO,
    RICEVUTA_RILEVAZIONE_VIRUS,
    TIPO_BREVE,
    TRASPORTO_ERRORE,
    TRASPORTO_POSTA_CERTIFICATA,
    VERIFICA_SICUREZZA_ERRORE,
    Kind,
)
from .mime import MimeError, MimeNode, crlf, decode_text, parse_headers, split_entity, walk_entity
from .smime import SignedParts, split_signed


@dataclass
class SignatureCheck:
    """Outcome of verifying the detached signature over the signed part."""

    verification: cms.CmsVerification
    canonicalised: bool  # matched only after turning bare LF into CRLF


@dataclass
class Problem:
    """Something that stopped part of the parse: `fatal` ones leave nothing further to judge."""

    what: str
    message: str
    fatal: bool = False


@dataclass
class ParsedMessage:
    raw: bytes
    kind: Kind = Kind.UNKNOWN
    headers: Message | None = None
    root: MimeNode | None = None
    signed: SignedParts | None = None
    signature: SignatureCheck | None = None
    body: MimeNode | None = None  # the signed content, or the root when unsigned
    text_plain: str | None = None
    text_html: str | None = None
    text_nodes: list[MimeNode] = field(default_factory=list)
    daticert_node: MimeNode | None = None
    daticert_raw: bytes | None = None
    daticert_tree: etree._Element | None = None
    daticert: dc.DatiCert | None = None
    postacert_node: MimeNode | None = None
    postacert: bytes | None = None
    line_ending: str = "crlf"
    problems: list[Problem] = field(default_factory=list)
    _address_cache: dict = field(default_factory=dict, repr=False)
    _original_headers: Message | None = field(default=None, repr=False)
    _original_read: bool = field(default=False, repr=False)

    @property
    def original_headers(self) -> Message | None:
        """Header fields of the carried original (postacert.eml), parsed once; None when absent or unreadable."""
        if not self._original_read:
            self._original_read = True
            if self.postacert is not None:
                try:
                    self._original_headers = parse_headers(split_entity(self.postacert)[0])
                except MimeError:
                    self._original_headers = None
        return self._original_headers

    def header(self, name: str) -> str | None:
        """First value of a header field, by case-insensitive name, unfolded."""
        if self.headers is None:
            return None
        value = self.headers.get(name)
        return None if value is None else re.sub(r"\r?\n[ \t]", " ", str(value)).strip()

    def header_all(self, name: str) -> list[str]:
        if self.headers is None:
            return []
        return [re.sub(r"\r?\n[ \t]", " ", str(v)).strip() for v in self.headers.get_all(name) or []]

    def addresses(self, *names: str) -> list[str]:
        """Lower-cased addr-specs of the named fields (To, Cc, From...), parsed once per message."""
        if names not in self._address_cache:
            values = [v for name in names for v in self.header_all(name)]
            self._address_cache[names] = [a.lower() for _, a in getaddresses(values) if a]
        return self._address_cache[names]

    def address(self, name: str) -> str:
        """The first addr-spec of a field, lower-cased ('' when absent)."""
        found = self.addresses(name)
        return found[0] if found else ""

    def header_names(self) -> list[str]:
        return list(self.headers.keys()) if self.headers is not None else []

    @property
    def subject(self) -> str:
        return decode_text(self.header("subject"))

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)


def _line_ending(raw: bytes) -> str:
    crlf_count = raw.count(b"\r\n")
    lf_count = raw.count(b"\n")
    if lf_count == 0 or crlf_count == lf_count:
        return "crlf"
    return "lf" if crlf_count == 0 else "mixed"


def _verify(signed: SignedParts) -> SignatureCheck | None:
    if signed.signature_der is None:
        return None
    result = cms.verify_cms(signed.signature_der, signed.content)
    if result.content_digest_matches is False and b"\n" in signed.content:
        canonical = crlf(signed.content)
        if canonical != signed.content:
            second = cms.verify_cms(signed.signature_der, canonical)
            if second.content_digest_matches:
                return SignatureCheck(second, canonicalised=True)
    return SignatureCheck(result, canonicalised=False)


def _classify(msg: ParsedMessage) -> Kind:
    trasporto = msg.header(H_TRASPORTO)
    ricevuta = msg.header(H_RICEVUTA)
    if trasporto is not None:
        return {TRASPORTO_POSTA_CERTIFICATA: Kind.BUSTA_TRASPORTO, TRASPORTO_ERRORE: Kind.BUSTA_ANOMALIA}.get(
            trasporto, Kind.UNKNOWN
        )
    if ricevuta is None:
        return Kind.ORDINARY
    virus = msg.header(H_VERIFICA_SICUREZZA) == VERIFICA_SICUREZZA_ERRORE
    if ricevuta == RICEVUTA_ACCETTAZIONE:
        return Kind.ACCETTAZIONE
    if ricevuta == RICEVUTA_NON_ACCETTAZIONE:
        return Kind.NON_ACCETTAZIONE_VIRUS if virus else Kind.NON_ACCETTAZIONE
    if ricevuta == RICEVUTA_PRESA_IN_CARICO:
        return Kind.PRESA_IN_CARICO
    if ricevuta == RICEVUTA_RILEVAZIONE_VIRUS:
        return Kind.RILEVAZIONE_VIRUS
    if ricevuta == RICEVUTA_ERRORE_CONSEGNA:
        return Kind.MANCATA_CONSEGNA_VIRUS if virus else Kind.MANCATA_CONSEGNA
    if ricevuta == RICEVUTA_AVVENUTA_CONSEGNA:
        if msg.postacert_node is None:
            return Kind.CONSEGNA_SINTETICA
        brief = (msg.daticert is not None and msg.daticert.ricevuta == TIPO_BREVE) or _has_hash_parts(msg)
        return Kind.CONSEGNA_BREVE if brief else Kind.CONSEGNA_COMPLETA
    if ricevuta == RICEVUTA_PREAVVISO:
        return Kind.MANCATA_CONSEGNA_24H if is_24h_notice(msg) else Kind.PREAVVISO_12H
    return Kind.UNKNOWN


_24H_TEXT = re.compile(r"\b24\s*ore\b|ventiquattro|\b24\s*hours\b", re.IGNORECASE)


_12H_TEXT = re.compile(r"\b12\s*ore\b|dodici|\b12\s*hours\b", re.IGNORECASE)


def is_24h_notice(msg: ParsedMessage) -> bool:
    """12 h and 24 h notices share header and XML: the text tells them apart, else the 5.4.1 code of the
    24 h notice (NOT-04), so a 12 h notice wrongly carrying 5.4.1 is still read as a 12 h one."""
    text = (msg.text_plain or msg.text_html or "")
    says_12, says_24 = bool(_12H_TEXT.search(text)), bool(_24H_TEXT.search(text))
    if says_12 != says_24:
        return says_24
    return msg.daticert is not None and (msg.daticert.errore_esteso or "").startswith("5.4.1")


def _has_hash_parts(msg: ParsedMessage) -> bool:
    if msg.postacert is None:
        return False
    return b".hash" in msg.postacert


def _find_parts(msg: ParsedMessage, body: MimeNode) -> None:
    children = body.children if body.maintype == "multipart" else [body]
    for index, node in enumerate(children):
        names = {(node.filename or "").lower(), (node.name or "").lower()}
        if index == 0 and node.maintype in ("text", "multipart") and node.content_type != "multipart/signed":
            msg.text_nodes = [leaf for leaf in node.leaves() if leaf.maintype == "text"] or [node]
            continue
        if msg.daticert_node is None and (
            names & {DATICERT_NAME, DATICERT_RFC_NAME}
            or node.content_type in ("application/xml", "text/xml")
        ):
            msg.daticert_node = node
        elif msg.postacert_node is None and (POSTACERT_NAME in names or node.content_type == "message/rfc822"):
            msg.postacert_node = node
    for leaf in msg.text_nodes:
        try:
            if leaf.content_type == "text/plain" and msg.text_plain is None:
                msg.text_plain = leaf.text()
            elif leaf.content_type == "text/html" and msg.text_html is None:
                msg.text_html = leaf.text()
        except MimeError as exc:
            msg.problems.append(Problem("text", str(exc)))


def _read_daticert(msg: ParsedMessage) -> None:
    node = msg.daticert_node
    if node is None:
        return
    try:
        msg.daticert_raw = node.decoded()
        msg.daticert_tree = dc.parse_tree(msg.daticert_raw)
        msg.daticert = dc.from_tree(msg.daticert_tree, msg.daticert_raw)
    except (MimeError, dc.DatiCertError) as exc:
        msg.problems.append(Problem("daticert", str(exc)))


def parse_message(raw: bytes) -> ParsedMessage:
    msg = ParsedMessage(raw=raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        msg.problems.append(Problem("size", f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte"
                                            " bound of the validator", fatal=True))
        return msg
    if not raw.strip():
        msg.problems.append(Problem("mime", "empty input", fatal=True))
        return msg
    msg.line_ending = _line_ending(raw[:1_000_000])
    try:
        root = walk_entity(raw)
    except MimeError as exc:
        msg.problems.append(Problem("mime", str(exc), fatal=True))
        return msg
    except Exception as exc:  # the stdlib header parser on hostile bytes: never let it escape
        msg.problems.append(Problem("mime", f"unparsable header block: {exc!r}", fatal=True))
        return msg
    msg.root = root
    msg.headers = root.headers
    if not root.headers.keys() or root.headers.defects and not root.headers.get("from"):
        msg.problems.append(Problem("mime", "no RFC 5322 header fields found: not a mail message", fatal=True))
        return msg
    msg.signed = split_signed(root)
    if msg.signed is not None:
        msg.body = msg.signed.content_node
        try:
            msg.signature = _verify(msg.signed)
        except Exception as exc:  # cms.verify_cms promises not to raise; this keeps the promise of parse
            msg.problems.append(Problem("signature", f"verification crashed: {exc!r}"))
    else:
        msg.body = root
    _find_parts(msg, msg.body)
    _read_daticert(msg)
    if msg.postacert_node is not None:
        try:
            msg.postacert = msg.postacert_node.decoded()
        except MimeError as exc:
            msg.problems.append(Problem("postacert", str(exc)))
    msg.kind = _classify(msg)
    return msg

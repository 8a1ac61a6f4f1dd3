"""Any message bytes -> a typed PEC message (kind, PEC headers, daticert, original, signature).

Nothing the message says is trusted or followed: no network, no entity expansion, bounded sizes
and depth. Problems become `problems` on the result (turned into ERROR or FAIL findings by the
validator), never exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

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
    SUBJECT_PREFIX,
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
    # Decision D35: whether the signed bytes hold an LF without its CR, and how the bytes reached us.
    bare_lf: bool = False
    captured: bool = False
    all_lf_file: bool = False


@dataclass
class Clue:
    """One piece of evidence about the kind of a message, and the kind it points to."""

    source: str  # "header", "header name", "daticert", "subject", "signature"
    detail: str
    kind: Kind | None  # None: says the message is PEC-signed, not which kind


@dataclass
class Classification:
    """The kind, read from every clue in one place (headers, subject prefix, daticert tipo, signer).

    The identifying header decides when it is present and valid. Without it, a message with PEC clues
    (a daticert that names its type, a misspelt identifying header, a PEC subject prefix on a signed
    message) is still that PEC kind, with `header_problem` saying what is wrong with the header.
    """

    kind: Kind
    clues: list[Clue] = field(default_factory=list)
    decided_by: str = "header"
    header_problem: str | None = None  # "missing", "misspelt field name ...", "value outside Appendix A"

    def agreeing(self) -> list[Clue]:
        return [c for c in self.clues if c.kind is None or c.kind is self.kind]

    def disagreeing(self) -> list[Clue]:
        return [c for c in self.clues if c.kind is not None and c.kind is not self.kind]


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
    classification: Classification | None = None
    captured: bool = False  # bytes exactly as received over SMTP by the run (decision D35)
    problems: list[Problem] = field(default_factory=list)
    _address_cache: dict = field(default_factory=dict, repr=False)
    _field_index: dict | None = field(default=None, repr=False)
    _field_cache: dict = field(default_factory=dict, repr=False)
    _subject: str | None = field(default=None, repr=False)
    memo: dict = field(default_factory=dict, repr=False)  # what several checks derive from the same message
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

    def _values(self, name: str) -> list[str]:
        """Every value of a field, unfolded, as the stdlib accessors give them; the fields are indexed by
        lower-case name once per message (the checks ask for the same fields many times)."""
        if self._field_index is None:
            index: dict[str, list[tuple[str, str]]] = {}
            for field_name, value in (self.headers._headers if self.headers is not None else []):
                index.setdefault(field_name.lower(), []).append((field_name, value))
            self._field_index = index
        key = name.lower()
        found = self._field_cache.get(key)
        if found is None:
            fetch = self.headers.policy.header_fetch_parse if self.headers is not None else None
            found = [_unfold(str(fetch(n, v))) for n, v in self._field_index.get(key, ())]
            self._field_cache[key] = found
        return found

    def header(self, name: str) -> str | None:
        """First value of a header field, by case-insensitive name, unfolded."""
        values = self._values(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return list(self._values(name))

    def addresses(self, *names: str) -> list[str]:
        """Lower-cased addr-specs of the named fields (To, Cc, From...), parsed once per message."""
        if names not in self._address_cache:
            self._address_cache[names] = address_list([v for name in names for v in self.header_all(name)])
        return self._address_cache[names]

    def date(self):
        """The Date field as an aware or naive datetime, None when absent or unparsable (parsed once)."""
        if "date" not in self.memo:
            try:
                value = self.header("date")
                self.memo["date"] = parsedate_to_datetime(value) if value else None
            except (TypeError, ValueError, IndexError, OverflowError):
                self.memo["date"] = None
        return self.memo["date"]

    def address(self, name: str) -> str:
        """The first addr-spec of a field, lower-cased ('' when absent)."""
        found = self.addresses(name)
        return found[0] if found else ""

    def header_names(self) -> list[str]:
        return list(self.headers.keys()) if self.headers is not None else []

    @property
    def subject(self) -> str:
        if self._subject is None:
            self._subject = decode_text(self.header("subject"))
        return self._subject

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)


def _unfold(value: str) -> str:
    return (_FOLD.sub(" ", value) if "\n" in value else value).strip()


_FOLD = re.compile(r"\r?\n[ \t]")
# A plain address list: comma-separated `addr` or `Name <addr>` items, nothing the full parser is needed for
# (quotes, comments, groups, escapes, encoded words).
_PLAIN_LIST = re.compile(r"[^\"()\\:;=?]*")
_PLAIN_ITEM = re.compile(r"\s*(?:[^<>@,]*<([^<>\s@,]+@[^<>\s@,]+)>|([^<>\s@,]+@[^<>\s@,]+))\s*")


def address_list(values: list[str]) -> list[str]:
    """Lower-cased addr-specs of address-list field values, as email.utils.getaddresses finds them; plain
    lists are cut directly (the stdlib parser is the slowest part of reading header fields)."""
    out: list[str] = []
    for value in values:
        if _PLAIN_LIST.fullmatch(value):
            items = [_PLAIN_ITEM.fullmatch(item) for item in value.split(",")]
            if all(items):
                out.extend((m.group(1) or m.group(2)).lower() for m in items)
                continue
        out.extend(a.lower() for _, a in getaddresses([value]) if a)
    return out


def _line_ending(raw: bytes) -> str:
    crlf_count = raw.count(b"\r\n")
    lf_count = raw.count(b"\n")
    if lf_count == 0 or crlf_count == lf_count:
        return "crlf"
    return "lf" if crlf_count == 0 else "mixed"


def _has_bare_lf(data: bytes) -> bool:
    return data.count(b"\n") != data.count(b"\r\n")


def _verify(signed: SignedParts, *, captured: bool, all_lf_file: bool) -> SignatureCheck | None:
    """Verify over the exact signed bytes. Only a stored file whose line ends are all LF (converted on
    storage) is verified again in canonical CRLF form; captured SMTP bytes never are (decision D35)."""
    if signed.signature_der is None:
        return None
    bare_lf = _has_bare_lf(signed.content)
    result = cms.verify_cms(signed.signature_der, signed.content)
    if result.content_digest_matches is False and bare_lf and all_lf_file and not captured:
        canonical = crlf(signed.content)
        second = cms.verify_cms(signed.signature_der, canonical)
        if second.content_digest_matches:
            return SignatureCheck(second, True, bare_lf, captured, all_lf_file)
    return SignatureCheck(result, False, bare_lf, captured, all_lf_file)


def _kind_of(field: str, value: str, msg: ParsedMessage, virus: bool) -> Kind:
    """The kind an identifying value names (`field`: "trasporto" or "ricevuta"), refined by the message's
    own content where one value covers several kinds (the receipt variants, 12 h and 24 h notices)."""
    if field == "trasporto":
        return {TRASPORTO_POSTA_CERTIFICATA: Kind.BUSTA_TRASPORTO, TRASPORTO_ERRORE: Kind.BUSTA_ANOMALIA}.get(
            value, Kind.UNKNOWN)
    if value == RICEVUTA_ACCETTAZIONE:
        return Kind.ACCETTAZIONE
    if value == RICEVUTA_NON_ACCETTAZIONE:
        return Kind.NON_ACCETTAZIONE_VIRUS if virus else Kind.NON_ACCETTAZIONE
    if value == RICEVUTA_PRESA_IN_CARICO:
        return Kind.PRESA_IN_CARICO
    if value == RICEVUTA_RILEVAZIONE_VIRUS:
        return Kind.RILEVAZIONE_VIRUS
    if value == RICEVUTA_ERRORE_CONSEGNA:
        return Kind.MANCATA_CONSEGNA_VIRUS if virus else Kind.MANCATA_CONSEGNA
    if value == RICEVUTA_AVVENUTA_CONSEGNA:
        if msg.postacert_node is None:
            return Kind.CONSEGNA_SINTETICA
        brief = (msg.daticert is not None and msg.daticert.ricevuta == TIPO_BREVE) or _has_hash_parts(msg)
        return Kind.CONSEGNA_BREVE if brief else Kind.CONSEGNA_COMPLETA
    if value == RICEVUTA_PREAVVISO:
        return Kind.MANCATA_CONSEGNA_24H if is_24h_notice(msg) else Kind.PREAVVISO_12H
    return Kind.UNKNOWN


# The identifying value each subject prefix stands for, longest prefix first (the virus and timeout
# prefixes extend shorter ones).
_PREFIX_VALUE = sorted({
    (SUBJECT_PREFIX[Kind.BUSTA_TRASPORTO], "trasporto", TRASPORTO_POSTA_CERTIFICATA, False),
    (SUBJECT_PREFIX[Kind.BUSTA_ANOMALIA], "trasporto", TRASPORTO_ERRORE, False),
    (SUBJECT_PREFIX[Kind.ACCETTAZIONE], "ricevuta", RICEVUTA_ACCETTAZIONE, False),
    (SUBJECT_PREFIX[Kind.NON_ACCETTAZIONE], "ricevuta", RICEVUTA_NON_ACCETTAZIONE, False),
    (SUBJECT_PREFIX[Kind.NON_ACCETTAZIONE_VIRUS], "ricevuta", RICEVUTA_NON_ACCETTAZIONE, True),
    (SUBJECT_PREFIX[Kind.PRESA_IN_CARICO], "ricevuta", RICEVUTA_PRESA_IN_CARICO, False),
    (SUBJECT_PREFIX[Kind.RILEVAZIONE_VIRUS], "ricevuta", RICEVUTA_RILEVAZIONE_VIRUS, False),
    (SUBJECT_PREFIX[Kind.MANCATA_CONSEGNA_VIRUS], "ricevuta", RICEVUTA_ERRORE_CONSEGNA, True),
    (SUBJECT_PREFIX[Kind.MANCATA_CONSEGNA], "ricevuta", RICEVUTA_ERRORE_CONSEGNA, False),
    (SUBJECT_PREFIX[Kind.CONSEGNA_COMPLETA], "ricevuta", RICEVUTA_AVVENUTA_CONSEGNA, False),
    (SUBJECT_PREFIX[Kind.PREAVVISO_12H], "ricevuta", RICEVUTA_PREAVVISO, False),
}, key=lambda row: -len(row[0]))
_IDENTIFYING = {H_TRASPORTO.lower(): "trasporto", H_RICEVUTA.lower(): "ricevuta"}


def _near(a: str, b: str, limit: int = 2) -> bool:
    """Edit distance of at most `limit` (header names are short: a plain dynamic programme)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def _misspelt_identifying(msg: ParsedMessage) -> tuple[str, str, str] | None:
    """(field, spelt name, value) of a header whose name is a near miss of X-Trasporto or X-Ricevuta."""
    for name in msg.header_names():
        low = name.lower()
        if low in _IDENTIFYING or not low.startswith("x-") or not 8 <= len(low) <= 13:
            continue
        for target, field_ in _IDENTIFYING.items():
            if _near(low, target):
                return field_, name, (msg.header(name) or "")
    return None


def _classify(msg: ParsedMessage) -> Classification:
    """Every clue to the kind, and the kind they settle on (see Classification)."""
    virus = msg.header(H_VERIFICA_SICUREZZA) == VERIFICA_SICUREZZA_ERRORE
    clues: list[Clue] = []
    trasporto, ricevuta = msg.header(H_TRASPORTO), msg.header(H_RICEVUTA)
    header_kind: Kind | None = None
    if trasporto is not None or ricevuta is not None:
        field_, value = ("trasporto", trasporto) if trasporto is not None else ("ricevuta", ricevuta)
        header_kind = _kind_of(field_, value, msg, virus)
        name = H_TRASPORTO if field_ == "trasporto" else H_RICEVUTA
        clues.append(Clue("header", f"{name}: {value}", header_kind if header_kind is not Kind.UNKNOWN else None))
    misspelt = _misspelt_identifying(msg) if header_kind is None else None
    if misspelt is not None:
        field_, name, value = misspelt
        kind = _kind_of(field_, value, msg, virus)
        clues.append(Clue("header name", f"{name}: {value}", kind if kind is not Kind.UNKNOWN else None))
    if msg.daticert is not None and msg.daticert.tipo:
        tipo = msg.daticert.tipo
        kind = _kind_of("trasporto" if tipo == TRASPORTO_POSTA_CERTIFICATA else "ricevuta", tipo, msg, virus)
        if kind is not Kind.UNKNOWN:
            clues.append(Clue("daticert", f"tipo={tipo}", kind))
    subject = msg.subject if msg.headers is not None else ""
    for prefix, field_, value, prefix_virus in _PREFIX_VALUE:
        if subject.startswith(prefix):
            clues.append(Clue("subject", f"prefix {prefix.strip()!r}", _kind_of(field_, value, msg, prefix_virus or
                                                                              virus)))
            break
    if msg.signature is not None and msg.signature.verification.signer_certificate is not None:
        clues.append(Clue("signature", "S/MIME signed", None))
    if header_kind is not None and header_kind is not Kind.UNKNOWN:
        return Classification(header_kind, clues)
    # No valid identifying header: the other clues decide, if they show a PEC message at all.
    signed = any(c.source == "signature" for c in clues)
    by_source = {c.source: c for c in clues if c.kind is not None}
    problem = "missing" if header_kind is None else "value outside Appendix A"
    if misspelt is not None:
        problem = f"misspelt field name {misspelt[1]!r}"
    for source in ("header name", "daticert", "subject"):
        clue = by_source.get(source)
        if clue is None or (source == "subject" and not signed and len(by_source) == 1):
            continue  # a subject prefix alone on unsigned mail is a user's choice of words
        return Classification(clue.kind, clues, decided_by=source, header_problem=problem)
    if header_kind is Kind.UNKNOWN:
        return Classification(Kind.UNKNOWN, clues, header_problem=problem)
    return Classification(Kind.ORDINARY, clues, decided_by="no PEC clue")


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


def parse_message(raw: bytes, *, captured: bool = False) -> ParsedMessage:
    """`captured`: the bytes are exactly what the run received over SMTP (decision D35), not a stored file."""
    msg = ParsedMessage(raw=raw, captured=captured)
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
            msg.signature = _verify(msg.signed, captured=captured, all_lf_file=b"\r\n" not in raw)
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
    msg.classification = _classify(msg)
    msg.kind = msg.classification.kind
    return msg

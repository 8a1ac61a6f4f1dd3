"""The validator: `check(message_bytes, context) -> findings`, pure.

Runs every registered check over one parsed message. A check that crashes on hostile input
becomes an ERROR finding; nothing escapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..catalogue import load_catalogue
from ..pec import daticert as dc
from ..pec.constants import MAX_MESSAGE_BYTES, Kind
from ..pec.parse import ParsedMessage, parse_message
from . import certdata, consistency, headers, receipts, signature, structure  # noqa: F401  (registration)
from .findings import REGISTRY, Finding, ValidationContext, Verdict, errored, info
from .wrapping import unwrap

# Requirement cited when the harness cannot read a message at all.
_PROBLEM_REQ = {"size": ("LIM-02",), "mime": ("FMT-01",), "signature": ("SIG-01",), "text": ("FMT-03",),
                "postacert": ("FMT-05",), "daticert": ("FMT-07",)}


@dataclass
class ValidationResult:
    kind: Kind
    findings: list[Finding] = field(default_factory=list)
    message: ParsedMessage | None = None

    def count(self, verdict: Verdict) -> int:
        return sum(1 for f in self.findings if f.verdict is verdict)

    @property
    def failed(self) -> bool:
        return any(f.verdict is Verdict.FAIL for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "kind": str(self.kind),
            "summary": {str(v): self.count(v) for v in Verdict if self.count(v)},
            "findings": [f.to_dict() for f in self.findings],
        }


_LEVELS: dict[str, str] = {}


_LEVEL_OF: dict[tuple[str, ...], str] = {}


def _level(requirements: tuple[str, ...]) -> str:
    found = _LEVEL_OF.get(requirements)
    if found is not None:
        return found
    if not _LEVELS:
        _LEVELS.update({r.id: r.level for r in load_catalogue()})
    found = next((_LEVELS[rid] for rid in requirements if rid in _LEVELS), "")
    if len(_LEVEL_OF) < 4096:
        _LEVEL_OF[requirements] = found
    return found


def validate_parsed(msg: ParsedMessage, context: ValidationContext | None = None, *,
                    families: tuple[str, ...] | None = None) -> ValidationResult:
    """Run the registered checks (only those whose name starts with one of `families`, when given)."""
    ctx = context or ValidationContext()
    result = ValidationResult(kind=msg.kind, message=msg)
    for problem in msg.problems:
        if problem.fatal or problem.what in ("signature",):
            result.findings.append(
                replace(errored(_PROBLEM_REQ.get(problem.what, ("FMT-01",)),
                                f"message not judged: {problem.message}" if problem.fatal else problem.message),
                        check=f"parse.{problem.what}")
            )
    if msg.fatal:
        result.findings = [replace(f, level=_level(f.requirements)) for f in result.findings]
        return result
    for spec in REGISTRY:
        if families is not None and not spec.name.startswith(families):
            continue
        try:
            for finding in spec.func(msg, ctx):
                finding.check, finding.level = spec.name, _level(finding.requirements)
                result.findings.append(finding)
        except Exception as exc:  # a check must never take the validator down with it
            result.findings.append(
                replace(errored(spec.requirements[:1], f"check crashed: {exc!r}"), check=spec.name,
                        level=_level(spec.requirements[:1]))
            )
    return result


_XML_START = re.compile(rb"^(\xef\xbb\xbf|\xff\xfe|\xfe\xff)?\s*(<\?xml|<postacert|<!DOCTYPE)", re.IGNORECASE)
_KIND_OF_TIPO = {
    "accettazione": Kind.ACCETTAZIONE,
    "presa-in-carico": Kind.PRESA_IN_CARICO,
    "posta-certificata": Kind.BUSTA_TRASPORTO,
    "rilevazione-virus": Kind.RILEVAZIONE_VIRUS,
}


def _kind_of_daticert(d: dc.DatiCert) -> Kind:
    """The kind a daticert alone describes (the header that would tell 12 h from 24 h is not there)."""
    if d.tipo in _KIND_OF_TIPO:
        return _KIND_OF_TIPO[d.tipo]
    virus = d.errore == "virus"
    if d.tipo == "non-accettazione":
        return Kind.NON_ACCETTAZIONE_VIRUS if virus else Kind.NON_ACCETTAZIONE
    if d.tipo == "errore-consegna":
        return Kind.MANCATA_CONSEGNA_VIRUS if virus else Kind.MANCATA_CONSEGNA
    if d.tipo == "avvenuta-consegna":
        return {"breve": Kind.CONSEGNA_BREVE, "sintetica": Kind.CONSEGNA_SINTETICA}.get(d.ricevuta or "",
                                                                                      Kind.CONSEGNA_COMPLETA)
    if d.tipo == "preavviso-errore-consegna":
        return Kind.MANCATA_CONSEGNA_24H if (d.errore_esteso or "").startswith("5.4.1") else Kind.PREAVVISO_12H
    return Kind.UNKNOWN


def validate_daticert(raw: bytes, context: ValidationContext | None = None) -> ValidationResult:
    """Judge a daticert.xml stored on its own with the daticert checks only."""
    msg = ParsedMessage(raw=raw, daticert_raw=raw)
    try:
        msg.daticert_tree = dc.parse_tree(raw)
        msg.daticert = dc.from_tree(msg.daticert_tree, raw)
        msg.kind = _kind_of_daticert(msg.daticert)
    except dc.DatiCertError as exc:
        result = ValidationResult(kind=Kind.UNKNOWN, message=msg)
        result.findings.append(replace(errored(("FMT-07",), f"daticert not judged: {exc}"), check="parse.daticert",
                                       level=_level(("FMT-07",))))
        return result
    ctx = context or ValidationContext()
    result = ValidationResult(kind=msg.kind, message=msg)
    for spec in REGISTRY:
        if not spec.name.startswith("daticert."):
            continue
        try:
            for finding in spec.func(msg, ctx):
                result.findings.append(replace(finding, check=spec.name, level=_level(finding.requirements)))
        except Exception as exc:  # same promise as validate_parsed
            result.findings.append(replace(errored(spec.requirements[:1], f"check crashed: {exc!r}"),
                                           check=spec.name, level=_level(spec.requirements[:1])))
    return result


def looks_like_daticert(raw: bytes) -> bool:
    return bool(_XML_START.match(raw[:512])) or raw[:2] in (b"\xff\xfe", b"\xfe\xff")


def check(message_bytes: bytes, context: ValidationContext | None = None) -> ValidationResult:
    """Judge one captured message; every finding cites the requirement(s) it checks.

    A PEC message wrapped by a forwarder or a mailing list is recognised, said so, and judged as the
    inner signed message it carries (decision D36).
    """
    ctx = context or ValidationContext()
    msg = parse_message(message_bytes, captured=ctx.captured_from_smtp)
    wrapped = unwrap(msg)
    if wrapped is None:
        return validate_parsed(msg, ctx)
    inner_bytes, how = wrapped
    result = validate_parsed(parse_message(inner_bytes, captured=ctx.captured_from_smtp), ctx)
    note = replace(info(("SIG-01", "GEN-04"), f"wrapped by a forwarder or mailing list ({how}): the outer layer "
                                              "is theirs; the inner signed message is judged as the PEC message",
                        decision="D36"), check="validator.wrapping")
    note.level = _level(note.requirements)
    result.findings.insert(0, note)
    return result


__all__ = ["MAX_MESSAGE_BYTES", "ValidationResult", "check", "looks_like_daticert", "unwrap", "validate_daticert",
           "validate_parsed"]

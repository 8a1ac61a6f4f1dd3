"""The requirement catalogue: the numbered rows of section 5 of the PEC requirements, as data.

The rows live in ``requirements.toml`` packaged next to this module; see the comment at the top of
that file for what each field means. Loading is pure: the only I/O is reading that packaged file,
and the result is cached.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

CATALOGUE_RESOURCE = "requirements.toml"

#: Normalised obligation levels a requirement may carry in ``level``.
LEVELS: frozenset[str] = frozenset(
    {"MUST", "MUST*", "MUST NOT", "SHALL", "SHOULD", "SHOULD NOT", "MAY", "INFO"}
)

#: Vantage points a requirement may be observed from (``observed``).
OBSERVATIONS: frozenset[str] = frozenset(
    {"mailbox", "counterpart", "external", "audit-only", "long-timer", "wire"}
)


class CatalogueError(ValueError):
    """The packaged catalogue is malformed."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One numbered requirement (one row of a section 5 table)."""

    id: str
    group: str
    level: str
    level_label: str
    observed: tuple[str, ...]
    audit_only: bool
    long_timer: bool
    rfc: tuple[str, ...]
    source: str
    decisions: tuple[str, ...]
    statement: str

    @property
    def mandatory(self) -> bool:
        """True for MUST, MUST*, MUST NOT and SHALL rows."""
        return self.level in {"MUST", "MUST*", "MUST NOT", "SHALL"}

    @property
    def wire_checkable(self) -> bool:
        """True when one captured message is enough to judge the requirement."""
        return "wire" in self.observed


class Catalogue:
    """The requirements in document order, looked up by ID."""

    __slots__ = ("_by_id", "_order")

    def __init__(self, requirements: Iterable[Requirement]) -> None:
        order = tuple(requirements)
        by_id: dict[str, Requirement] = {}
        for req in order:
            if req.id in by_id:
                raise CatalogueError(f"duplicate requirement id {req.id}")
            by_id[req.id] = req
        self._order = order
        self._by_id = by_id

    def get(self, req_id: str) -> Requirement:
        """The requirement with that ID; KeyError if there is none."""
        try:
            return self._by_id[req_id]
        except KeyError:
            raise KeyError(f"unknown requirement id {req_id!r}") from None

    def ids(self) -> tuple[str, ...]:
        """All IDs, in document order."""
        return tuple(req.id for req in self._order)

    def group(self, name: str) -> tuple[Requirement, ...]:
        """The requirements whose ID prefix is ``name`` (e.g. "ENV"), in document order."""
        return tuple(req for req in self._order if req.group == name)

    def __contains__(self, req_id: object) -> bool:
        return req_id in self._by_id

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"Catalogue({len(self._order)} requirements)"


def _str_tuple(raw: Mapping[str, Any], key: str, req_id: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogueError(f"{req_id}: {key} must be a list of strings")
    return tuple(value)


def _str(raw: Mapping[str, Any], key: str, req_id: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise CatalogueError(f"{req_id}: {key} must be a string")
    return value


def _bool(raw: Mapping[str, Any], key: str, req_id: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise CatalogueError(f"{req_id}: {key} must be a boolean")
    return value


def _requirement(raw: Mapping[str, Any]) -> Requirement:
    req_id = raw.get("id")
    if not isinstance(req_id, str):
        raise CatalogueError(f"requirement without a string id: {dict(raw)!r}")
    req = Requirement(
        id=req_id,
        group=_str(raw, "group", req_id),
        level=_str(raw, "level", req_id),
        level_label=_str(raw, "level_label", req_id),
        observed=_str_tuple(raw, "observed", req_id),
        audit_only=_bool(raw, "audit_only", req_id),
        long_timer=_bool(raw, "long_timer", req_id),
        rfc=_str_tuple(raw, "rfc", req_id),
        source=_str(raw, "source", req_id),
        decisions=_str_tuple(raw, "decisions", req_id),
        statement=_str(raw, "statement", req_id),
    )
    if req.level not in LEVELS:
        raise CatalogueError(f"{req_id}: unknown level {req.level!r}")
    unknown = set(req.observed) - OBSERVATIONS
    if unknown:
        raise CatalogueError(f"{req_id}: unknown observation(s) {sorted(unknown)}")
    return req


def parse_catalogue(text: str) -> Catalogue:
    """Build a catalogue from TOML text in the format of ``requirements.toml``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"invalid TOML: {exc}") from None
    rows = data.get("requirement")
    if not isinstance(rows, list):
        raise CatalogueError("no [[requirement]] tables")
    return Catalogue(tuple(_requirement(row) for row in rows))


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The packaged catalogue (read once, then cached)."""
    text = resources.files(__package__ or "conformance").joinpath(CATALOGUE_RESOURCE).read_text("utf-8")
    return parse_catalogue(text)


# ------------------------------------------------------------------------------------------ decisions

DECISIONS_RESOURCE = "decisions.toml"

#: What each requirement group covers, for the generated documentation.
GROUPS: dict[str, str] = {
    "GEN": "General rules for the messages a provider generates",
    "ACC": "Access point: formal checks, acceptance and non-acceptance",
    "SIZ": "Size limits",
    "ENV": "Transport envelope",
    "RIC": "Incoming point: verification, presa in carico, forwarding",
    "ANO": "Anomalies and the anomaly envelope",
    "CON": "Delivery point and receipt variants (complete, brief, concise, non-delivery)",
    "MUL": "Several and mixed recipients",
    "TMO": "Sender-side timers (12 h / 24 h) and the idle limit",
    "VIR": "Viruses",
    "FMT": "MIME, text and daticert.xml formats, subject prefixes",
    "SIG": "Signatures and the certificate profile",
    "IDX": "The providers index",
    "SEC": "Secure transport and the network boundary",
    "LOG": "Logs and retention",
    "TIM": "Time reference and date formats",
    "LIM": "Limits the decree sets",
    "AVL": "Availability",
    "NOT": "Non-delivery reasons",
    "HDR": "Header fields",
    "TXT": "The human-readable text",
}

#: What each normalised level means (the catalogue's `level`).
LEVEL_MEANINGS: dict[str, str] = {
    "MUST": "mandatory (RFC 2119 MUST or REQUIRED); broken: FAIL",
    "MUST*": "mandatory without an RFC 2119 keyword: it follows from the RFC's templates, the daticert DTD "
             "or what the text implies; broken: FAIL",
    "MUST NOT": "forbidden; done anyway: FAIL",
    "SHALL": "mandatory, the decree's or the RFC's SHALL; broken: FAIL",
    "SHOULD": "recommended; broken: WARN",
    "SHOULD NOT": "discouraged; done anyway: WARN",
    "MAY": "allowed; never a FAIL",
    "INFO": "descriptive, no pass or fail",
}

OBSERVATION_MEANINGS: dict[str, str] = {
    "mailbox": "the suite's test mailboxes on the provider under test",
    "counterpart": "the simulated second PEC provider (the counterpart)",
    "external": "an ordinary, non-PEC mail server",
    "audit-only": "only with the provider's cooperation (logs, storage, documents): REVIEW",
    "long-timer": "the 12 h / 24 h timers (or a scaled clock)",
    "wire": "one captured message is enough (`pec-conformance validate`)",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """One reading of a point the rules leave open (D1 ... D36)."""

    id: str
    point: str
    reading: str
    verdicts: str
    sources: tuple[str, ...]
    requirements: tuple[str, ...]


@lru_cache(maxsize=1)
def load_decisions() -> dict[str, Decision]:
    """The packaged decisions by ID, in order (D1 ... D36); each lists the requirements it applies to,
    its own list followed by the requirements whose catalogue row names it."""
    text = resources.files(__package__ or "conformance").joinpath(DECISIONS_RESOURCE).read_text("utf-8")
    rows = tomllib.loads(text).get("decision")
    if not isinstance(rows, list):
        raise CatalogueError("no [[decision]] tables")
    named: dict[str, list[str]] = {}
    for req in load_catalogue():
        for did in req.decisions:
            named.setdefault(did, []).append(req.id)
    out: dict[str, Decision] = {}
    for raw in rows:
        did = _str(raw, "id", str(raw.get("id")))
        own = _str_tuple(raw, "requirements", did)
        out[did] = Decision(id=did, point=_str(raw, "point", did), reading=_str(raw, "reading", did),
                            verdicts=_str(raw, "verdicts", did), sources=_str_tuple(raw, "sources", did),
                            requirements=tuple(dict.fromkeys(own + tuple(named.get(did, ())))))
    return out


# -------------------------------------------------------------------------------------- documentation

DOCS_REQUIREMENTS = "requirements.md"
DOCS_DECISIONS = "decisions.md"
_GENERATED = "<!-- Generated from conformance/{} by `python -m conformance.catalogue docs`: do not edit. -->"


def anchor(ident: str) -> str:
    """The anchor of a requirement or decision heading in docs/ (``FMT-04`` -> ``fmt-04``)."""
    return ident.lower()


def doc_link(ident: str, base: str = "") -> str | None:
    """Where the entry of a requirement or decision ID lives in docs/, relative to ``base`` (a folder
    path ending in ``/``, or empty for docs/ itself); None for an unknown ID."""
    if ident in load_decisions():
        return f"{base}{DOCS_DECISIONS}#{anchor(ident)}"
    if ident in load_catalogue():
        return f"{base}{DOCS_REQUIREMENTS}#{anchor(ident)}"
    return None


def decisions_for(req_id: str) -> list[str]:
    """The decisions that apply to a requirement: those its row names and those that name it."""
    return [d.id for d in load_decisions().values() if req_id in d.requirements]


def _req_facts(req: Requirement, link: bool) -> str:
    decisions = ", ".join(f"[{d}]({DOCS_DECISIONS}#{anchor(d)})" if link else d for d in decisions_for(req.id))
    parts = [f"**{req.level}**" + (f" ({req.level_label})" if req.level_label != req.level else ""),
             "observed: " + ", ".join(req.observed),
             f"source: {req.source}" + (f" section {', '.join(req.rfc)}" if req.rfc else "")]
    if decisions:
        parts.append(f"decisions: {decisions}")
    return " · ".join(parts)


def requirements_markdown() -> str:
    """docs/requirements.md: every requirement of the catalogue, by group, with its level and sources."""
    catalogue = load_catalogue()
    lines = [_GENERATED.format(CATALOGUE_RESOURCE), "", "# Requirements", "",
             f"The {len(catalogue)} requirements the suite judges, in the project's own words. Each finding of "
             "the validator and each scenario cites them by ID; `pec-conformance explain ID` prints one entry.",
             "", "Levels:", ""]
    lines += [f"- **{level}**: {meaning}" for level, meaning in LEVEL_MEANINGS.items()]
    lines += ["", "Observed from:", ""]
    lines += [f"- **{name}**: {meaning}" for name, meaning in OBSERVATION_MEANINGS.items()]
    lines += ["", "Where a reading of an open point was needed, the entry names the decision "
              f"([decisions.md]({DOCS_DECISIONS})).", ""]
    groups = list(dict.fromkeys(req.group for req in catalogue))
    lines += ["Groups: " + ", ".join(f"[{g}](#{anchor(g)}-{_slug(GROUPS.get(g, g))})" for g in groups), ""]
    for group in groups:
        lines += [f"## {group}: {GROUPS.get(group, group)}", ""]
        for req in catalogue.group(group):
            lines += [f"### {req.id}", "", req.statement, "", _req_facts(req, True), ""]
    return "\n".join(lines)


def _slug(text: str) -> str:
    """GitHub's heading anchor for ``text`` (lower case, punctuation dropped, spaces to dashes)."""
    kept = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def decisions_markdown() -> str:
    """docs/decisions.md: every decision with the point, the reading, the verdicts and the sources."""
    decisions = load_decisions()
    lines = [_GENERATED.format(DECISIONS_RESOURCE), "", "# Readings of open points (D1 ... D36)", "",
             "RFC 6109, the Italian decree (DM 2 November 2005 and its technical annex) and the messages real "
             "providers send do not always agree, and in places say nothing. Where the suite needs one "
             "reading, it is written down here and every finding that depends on it names it (`(D16)`), so "
             "a provider that disputes a verdict can see why. The decree comes first, then what real "
             "providers do, then the RFC's English text. A provider that follows another reading records it "
             "in its expectations file (an expected verdict with a reason): the report then shows an "
             "expected deviation (XFAIL), not a failure.", ""]
    for d in decisions.values():
        reqs = ", ".join(f"[{r}]({DOCS_REQUIREMENTS}#{anchor(r)})" for r in d.requirements)
        lines += [f"### {d.id}", "", f"**{d.point}**", "", d.reading, "", f"Verdicts: {d.verdicts}", "",
                  "Sources:", ""]
        lines += [f"- {s}" for s in d.sources]
        lines += ["", f"Requirements: {reqs or 'none'}", ""]
    return "\n".join(lines)


def explain(ident: str) -> str | None:
    """The plain-text entry of a requirement or decision ID (case-insensitive); None if unknown."""
    ident = ident.strip().upper()
    decisions = load_decisions()
    if ident in decisions:
        d = decisions[ident]
        lines = [f"{d.id}: {d.point}", "", d.reading, "", f"Verdicts: {d.verdicts}", "", "Sources:"]
        lines += [f"  - {s}" for s in d.sources]
        lines += ["", "Requirements: " + (", ".join(d.requirements) or "none"),
                  f"More: docs/{DOCS_DECISIONS}#{anchor(d.id)}"]
        return "\n".join(lines)
    catalogue = load_catalogue()
    if ident in catalogue:
        req = catalogue.get(ident)
        lines = [f"{req.id} ({GROUPS.get(req.group, req.group)})", "", req.statement, "",
                 _req_facts(req, False).replace("**", "")]
        lines.append(f"Level {req.level}: {LEVEL_MEANINGS.get(req.level, '')}")
        for did in decisions_for(req.id):
            if did in decisions:
                lines.append(f"{did}: {decisions[did].point} (pec-conformance explain {did})")
        lines.append(f"More: docs/{DOCS_REQUIREMENTS}#{anchor(req.id)}")
        return "\n".join(lines)
    return None


def write_docs(folder: str) -> list[str]:
    """Write the generated pages into ``folder`` (docs/); return their paths."""
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((DOCS_REQUIREMENTS, requirements_markdown()), (DOCS_DECISIONS, decisions_markdown())):
        (out / name).write_text(text, encoding="utf-8", newline="\n")
        written.append(str(out / name))
    return written


if __name__ == "__main__":  # python -m conformance.catalogue docs
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m conformance.catalogue DOCS_FOLDER")
    for path in write_docs(sys.argv[1]):
        print(f"wrote {path}")

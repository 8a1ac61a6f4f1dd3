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

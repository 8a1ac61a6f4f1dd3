"""The packaged requirement catalogue (`conformance/requirements.toml`), the project's own source of truth:
its shape, its counts and its internal consistency. Nothing outside the repository is read."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from conformance.catalogue import LEVELS, OBSERVATIONS, Catalogue, load_catalogue

ID_RE = re.compile(r"^[A-Z]{3}-\d{2}$")

# The 19 audit-only rows counted in section 9 of the spec, plus the 5.17 rows observed only by audit.
AUDIT_ONLY = set(
    "VIR-01 VIR-04 VIR-11 VIR-12 SIG-13 SIG-16 IDX-01 IDX-02 IDX-03 IDX-04 IDX-05 IDX-06 IDX-13 IDX-14 "
    "SEC-06 LOG-01 LOG-02 LOG-03 LOG-04 "
    "AVL-01 SIG-18".split()
)

# The 14 [T] rows counted in section 9 of the spec, plus NOT-04 of 5.17.
LONG_TIMER = set(
    "RIC-07 MUL-10 TMO-01 TMO-02 TMO-03 TMO-04 TMO-05 TMO-06 TMO-08 TMO-09 TMO-10 TMO-12 TMO-13 IDX-07 "
    "NOT-04".split()
)

DECISIONS = {f"D{n}" for n in range(1, 37)}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_exactly_229_requirements(catalogue: Catalogue) -> None:
    assert len(catalogue) == 229
    assert len(list(catalogue)) == 229


def test_ids_unique_and_well_formed(catalogue: Catalogue) -> None:
    ids = catalogue.ids()
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes
    assert all(ID_RE.match(i) for i in ids), [i for i in ids if not ID_RE.match(i)]


def test_each_group_numbered_without_gaps(catalogue: Catalogue) -> None:
    # Rows added after the RFC sections (limits, availability, notices, SEC-07, ...) continue the
    # numbering of their group: every group runs 01..N with no gap and no repeat.
    for group in {req.group for req in catalogue}:
        numbers = sorted(int(r.id[4:]) for r in catalogue.group(group))
        assert numbers == list(range(1, len(numbers) + 1)), (group, numbers)


def test_first_rows_in_document_order(catalogue: Catalogue) -> None:
    ids = catalogue.ids()
    assert ids[:3] == ("GEN-01", "GEN-02", "GEN-03") and ids[-1] == "TXT-01"
    assert ids.index("SEC-08") < ids.index("SEC-07")  # SEC-07 was added later, with the decree's rows


def test_group_is_id_prefix(catalogue: Catalogue) -> None:
    for req in catalogue:
        assert req.group == req.id[:3], req.id


def test_audit_only_set(catalogue: Catalogue) -> None:
    assert len(AUDIT_ONLY) == 19 + 2
    assert {r.id for r in catalogue if r.audit_only} == AUDIT_ONLY
    for req in catalogue:
        if req.audit_only:
            assert "audit-only" in req.observed, req.id


def test_long_timer_set(catalogue: Catalogue) -> None:
    assert len(LONG_TIMER) == 14 + 1
    assert {r.id for r in catalogue if r.long_timer} == LONG_TIMER
    for req in catalogue:
        assert req.long_timer == ("long-timer" in req.observed), req.id


def test_statements_one_line(catalogue: Catalogue) -> None:
    for req in catalogue:
        assert req.statement.strip(), req.id
        assert "\n" not in req.statement and "\r" not in req.statement, req.id
        assert len(req.statement) <= 220, (req.id, len(req.statement))


def test_levels_allowed(catalogue: Catalogue) -> None:
    for req in catalogue:
        assert req.level in LEVELS, (req.id, req.level)
        assert req.level_label.strip(), req.id


def test_level_agrees_with_its_label(catalogue: Catalogue) -> None:
    for req in catalogue:
        label = req.level_label.upper()
        if req.level in ("MUST", "MUST NOT", "SHALL", "SHOULD", "SHOULD NOT", "MAY"):
            assert req.level.split()[0] in label, (req.id, req.level, req.level_label)


def test_observed_values(catalogue: Catalogue) -> None:
    for req in catalogue:
        assert req.observed, req.id
        assert set(req.observed) <= OBSERVATIONS, req.id


def test_decisions_in_range(catalogue: Catalogue) -> None:
    for req in catalogue:
        assert set(req.decisions) <= DECISIONS, (req.id, req.decisions)
        assert len(set(req.decisions)) == len(req.decisions), req.id


def test_rfc_sections_and_source(catalogue: Catalogue) -> None:
    section = re.compile(r"^(\d+(\.\d+)*(-\d+(\.\d+)*)?|Appendix A)$")
    for req in catalogue:
        assert req.source.strip(), req.id
        assert all(section.match(s) for s in req.rfc), (req.id, req.rfc)
        if req.source == "RFC 6109":
            assert req.rfc, req.id


def test_lookup(catalogue: Catalogue) -> None:
    assert "SEC-07" in catalogue
    assert "SEC-09" not in catalogue
    assert catalogue.get("GEN-01").group == "GEN"
    with pytest.raises(KeyError):
        catalogue.get("ZZZ-99")
    assert load_catalogue() is catalogue

"""Every check cites only catalogue IDs, and every finding only IDs its check declares."""

from __future__ import annotations

import pytest

from conformance.catalogue import load_catalogue
from conformance.checks.findings import REGISTRY, Verdict
from conformance.checks.validator import check
from conformance.pec.constants import PEC_KINDS, Kind


def test_every_check_cites_known_requirements():
    catalogue = load_catalogue()
    unknown = {(spec.name, rid) for spec in REGISTRY for rid in spec.requirements if rid not in catalogue}
    assert not unknown, f"checks cite IDs missing from the catalogue: {sorted(unknown)}"


def test_check_names_are_unique_and_documented():
    names = [spec.name for spec in REGISTRY]
    assert len(names) == len(set(names))
    assert all(spec.description and spec.description != spec.name for spec in REGISTRY)


@pytest.mark.parametrize("kind", PEC_KINDS, ids=str)
def test_each_kind_built_by_the_project_has_zero_fail(kind, samples, full_context):
    result = check(samples.messages[kind], full_context(kind))
    assert result.kind is kind
    bad = [f for f in result.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]
    assert not bad, "\n".join(f"{f.check} {f.requirements} {f.message} {f.expected} {f.actual}" for f in bad)
    assert result.count(Verdict.PASS) >= 25  # the checks did run, not just stay silent


@pytest.mark.parametrize("kind", PEC_KINDS, ids=str)
def test_findings_cite_only_what_their_check_declares(kind, samples, full_context):
    declared = {spec.name: set(spec.requirements) for spec in REGISTRY}
    catalogue = load_catalogue()
    for finding in check(samples.messages[kind], full_context(kind)).findings:
        assert finding.requirements, finding
        for rid in finding.requirements:
            assert rid in catalogue, finding
            if finding.check in declared:
                assert rid in declared[finding.check], f"{finding.check} cites undeclared {rid}"
        assert finding.level, finding


def test_without_index_or_ca_trust_checks_skip_never_fail(samples):
    result = check(samples.messages[Kind.BUSTA_TRASPORTO])
    skipped = {rid for f in result.findings if f.verdict is Verdict.SKIP for rid in f.requirements}
    assert {"RIC-05", "RIC-06"} <= skipped
    assert not [f for f in result.findings if f.verdict is Verdict.FAIL]
    # signature and content digest are still verified
    assert any(f.verdict is Verdict.PASS and "SIG-01" in f.requirements and "digest" in f.message
               for f in result.findings)

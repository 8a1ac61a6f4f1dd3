"""Shared fixtures: one small PEC world per test session (RSA key generation is the slow part)."""

from __future__ import annotations

import pytest

from conformance.checks.findings import ValidationContext
from conformance.pec.samples import build_all_kinds, make_world


@pytest.fixture(scope="session")
def world():
    return make_world()


@pytest.fixture(scope="session")
def samples(world):
    return build_all_kinds(world)


@pytest.fixture()
def full_context(world, samples):
    """Everything the validator can be told: index, CA, CRL and the carried original."""

    def make(kind=None):
        return ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl],
                                 carried_original=samples.carried_original, expected_kind=kind)

    return make

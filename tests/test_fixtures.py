"""The example files in fixtures/ are valid: the profile against its JSON Schema, the expectations parse."""

from __future__ import annotations

from pathlib import Path

from conformance.engine.core import load_expectations
from conformance.engine.profile import load_profile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_example_profile_loads():
    profile = load_profile(FIXTURES / "target-profile.example.toml")
    assert profile.domains == ["pec.esempio.test"] and len(profile.mailboxes) == 3
    assert all(m.password_env for m in profile.mailboxes)
    assert "password" not in str(profile.describe()).lower()


def test_example_expectations_load():
    items = load_expectations(FIXTURES / "expectations.example.toml")
    assert {e.verdict for e in items} == {"WARN"} and all(e.reason for e in items)


def test_a_profile_with_an_unknown_field_is_refused(tmp_path):
    import pytest

    from conformance.engine.profile import ProfileError

    bad = tmp_path / "p.toml"
    bad.write_text((FIXTURES / "target-profile.example.toml").read_text() + '\npassword = "oops"\n')
    with pytest.raises(ProfileError):
        load_profile(bad)

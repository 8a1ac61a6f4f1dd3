"""The DER fast path of CMS verification agrees with the general asn1crypto path, byte flip for byte flip."""

from __future__ import annotations

import random

import pytest

from conformance.pec import cms
from conformance.pec.mime import walk_entity
from conformance.pec.smime import split_signed


def _general(der: bytes, content: bytes) -> cms.CmsVerification:
    original = cms._fast_verify
    cms._fast_verify = lambda *a: False
    try:
        return cms.verify_cms(der, content)
    finally:
        cms._fast_verify = original


def _summary(v: cms.CmsVerification):
    return (v.structure_ok, v.signature_valid, v.content_digest_matches, v.digest_algorithm,
            v.signing_time, v.signer_certificate is not None, v.ok, v.encapsulated_content)


@pytest.mark.parametrize("digest", ["sha256", "sha1"])
def test_fast_and_general_paths_agree(world, digest):
    from conformance.pec.samples import build_all_kinds

    rng = random.Random(6109)
    for raw in build_all_kinds(world, digest=digest).messages.values():
        signed = split_signed(walk_entity(raw))
        der, content = signed.signature_der, signed.content
        assert cms._fast_verify(der, content, cms.CmsVerification())  # the common shape takes the fast path
        assert _summary(cms.verify_cms(der, content)) == _summary(_general(der, content))
        for _ in range(60):
            i = rng.randrange(len(der))
            flipped = der[:i] + bytes([der[i] ^ (1 << rng.randrange(8))]) + der[i + 1:]
            fast, general = cms.verify_cms(flipped, content), _general(flipped, content)
            # A flip outside what is signed (e.g. the digestAlgorithms SET) may pass; both paths agree.
            assert fast.ok == general.ok, (i, fast.errors, general.errors)
        tampered = content[:-5] + b"X" + content[-4:]
        assert not cms.verify_cms(der, tampered).ok
        assert cms.verify_cms(der, tampered).content_digest_matches is False


@pytest.mark.parametrize("digest", ["sha256", "sha1"])
def test_attached_content_is_reported_alike(world, digest):
    """An attached SignedData inside multipart/signed (a defect the validator FAILs under SIG-01): both paths
    report the embedded content, byte flip for byte flip."""
    rng = random.Random(5751)
    content = b"Content-Type: text/plain\r\n\r\nciao\r\n"
    der = cms.sign_attached(content, world.alfa.key, world.alfa.certificate, digest=digest)
    for detached in (content, None):
        fast, general = cms.verify_cms(der, detached), _general(der, detached)
        assert _summary(fast) == _summary(general)
        assert fast.encapsulated_content == content and fast.ok
    for _ in range(60):
        i = rng.randrange(len(der))
        flipped = der[:i] + bytes([der[i] ^ (1 << rng.randrange(8))]) + der[i + 1:]
        fast, general = cms.verify_cms(flipped, content), _general(flipped, content)
        assert fast.ok == general.ok, (i, fast.errors, general.errors)

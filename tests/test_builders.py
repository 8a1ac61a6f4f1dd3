"""Builders: the bytes on the wire are the bytes that were signed and the original travels intact."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from conformance.pec import build as b
from conformance.pec import daticert as dc
from conformance.pec.constants import SUBJECT_PREFIX, Kind
from conformance.pec.mime import split_entity, walk_entity
from conformance.pec.parse import parse_message
from conformance.pec.samples import sample_original


def test_rewrite_original_replaces_only_the_message_id():
    raw = sample_original()
    out = b.rewrite_original(raw, "opec.1@pec.alfa.test", "<m42.7@client.test>")
    head, body = split_entity(out)
    assert body == split_entity(raw)[1]
    assert b"Message-ID: <opec.1@pec.alfa.test>" in head
    assert b"X-Riferimento-Message-ID: <m42.7@client.test>" in head
    assert b"m42.7@client.test>\r\n" in head and head.count(b"Message-ID:") == 2  # ours + X-Riferimento


def test_envelope_carries_the_rewritten_original_byte_for_byte(samples):
    msg = parse_message(samples.messages[Kind.BUSTA_TRASPORTO])
    assert msg.postacert == samples.carried_original
    assert msg.signature.verification.ok and not msg.signature.canonicalised


def test_every_kind_has_its_subject_prefix_and_signed_structure(samples):
    for kind, raw in samples.messages.items():
        msg = parse_message(raw)
        assert msg.kind is kind
        assert msg.subject.startswith(SUBJECT_PREFIX[kind])
        assert msg.signed is not None and msg.signature.verification.ok
        assert msg.signature.verification.digest_algorithm == "sha256"


def test_brief_original_hashes_named_parts_on_their_encoded_body():
    raw = sample_original()
    brief = b.brief_original(raw)
    original, hashed = walk_entity(raw), walk_entity(brief)
    assert [c.content_type for c in hashed.children] == ["text/plain", "text/plain"]
    pdf = original.children[1]
    assert hashed.children[0].raw == original.children[0].raw  # unnamed text kept as is
    assert hashed.children[1].filename == "fattura-42.pdf.hash"
    assert hashed.children[1].text().strip() == hashlib.sha1(pdf.body).hexdigest()


def test_brief_original_leaves_opaque_smime_intact():
    opaque = (b"From: a@pec.alfa.test\r\nTo: b@pec.beta.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n")
    assert b.brief_original(opaque) == opaque


def test_daticert_time_follows_italian_legal_time():
    winter = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    assert dc.data_fields(winter) == ("+0100", "15/01/2026", "11:00:00")
    assert dc.data_fields(summer) == ("+0200", "15/07/2026", "12:00:00")
    # the switch instant: 29 March 2026 01:00 UTC
    assert dc.data_fields(datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC))[0] == "+0100"
    assert dc.data_fields(datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC))[0] == "+0200"


def test_daticert_render_parse_round_trip_keeps_escaped_msgid(samples):
    d = parse_message(samples.messages[Kind.ACCETTAZIONE]).daticert
    xml = dc.render(d)
    assert b"<msgid>&lt;m42.7@client.test&gt;</msgid>" in xml
    again = dc.parse(xml)
    assert again.msgid == "<m42.7@client.test>" and again.identificativo == samples.identificativo
    assert not dc.schema_errors(dc.parse_tree(xml))


def test_daticert_defaults_are_applied_in_code():
    xml = (b'<?xml version="1.0"?><postacert tipo="accettazione"><intestazione><mittente>a@x.it</mittente>'
           b'<destinatari>b@y.it</destinatari><risposte>a@x.it</risposte></intestazione><dati>'
           b'<gestore-emittente>G</gestore-emittente><data zona="+0100"><giorno>01/01/2026</giorno>'
           b'<ora>10:00:00</ora></data><identificativo>id@x.it</identificativo></dati></postacert>')
    d = dc.parse(xml)
    assert d.errore == "nessuno" and d.errore_defaulted
    assert d.destinatari[0].tipo == "certificato" and d.destinatari[0].tipo_defaulted


def test_sha1_signature_is_built_for_legacy_peers(world):
    from conformance.pec.samples import build_all_kinds

    msg = parse_message(build_all_kinds(world, digest="sha1").messages[Kind.ACCETTAZIONE])
    assert msg.signature.verification.ok and msg.signature.verification.digest_algorithm == "sha1"
    assert msg.signed.micalg == "sha-1"


def test_openssl_verifies_our_signatures(samples, world, tmp_path):
    """An independent implementation agrees: `openssl cms -verify` over the exact signed bytes."""
    import shutil
    import subprocess

    from conformance.pec.smime import split_signed

    openssl = shutil.which("openssl")
    assert openssl, "openssl is part of every Debian machine"
    (tmp_path / "ca.pem").write_bytes(world.ca.pem())
    for kind in (Kind.ACCETTAZIONE, Kind.BUSTA_TRASPORTO, Kind.CONSEGNA_BREVE):
        signed = split_signed(walk_entity(samples.messages[kind]))
        (tmp_path / "sig.der").write_bytes(signed.signature_der)
        (tmp_path / "content").write_bytes(signed.content)
        proc = subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.der"),
                               "-content", str(tmp_path / "content"), "-CAfile", str(tmp_path / "ca.pem"),
                               "-purpose", "any", "-out", "/dev/null"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr

"""Defects and false FAILs found on real-world messages, each reproduced with the project's own builders.

Missed defects: a mutation of a valid sample that must now FAIL under the right requirement. False FAILs:
a variant that genuine mail shows (an inline style, an old certificate, a user's own message, a daticert on
its own, a message wrapped by a list) that must not FAIL. Decisions D32 to D36.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import mutate as m
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import ValidationResult, check, validate_daticert
from conformance.pec.constants import Kind
from conformance.pec.index import ProvidersIndex, index_records_from_providers
from conformance.pec.mime import entity, multipart, text_part

K = Kind
ALFA_KINDS = frozenset({K.ACCETTAZIONE, K.NON_ACCETTAZIONE, K.NON_ACCETTAZIONE_VIRUS, K.BUSTA_TRASPORTO,
                        K.MANCATA_CONSEGNA_VIRUS, K.PREAVVISO_12H, K.MANCATA_CONSEGNA_24H})
ALFA_NAME = "Gestore Alfa S.p.A."
ALFA_SERVICE = "posta-certificata@pec.alfa.test"
# The 88-byte inline style of a real Namirial envelope (2024): presentation only, it references nothing.
NAMIRIAL_STYLE = "<style>body{font-family:Arial,Helvetica,sans-serif;font-size:10pt;color:#000000}</style>"


def creds(world, kind: Kind):
    return world.alfa if kind in ALFA_KINDS else world.beta


def resign(world, samples, kind: Kind, transform) -> bytes:
    c = creds(world, kind)
    return m.resign(samples.messages[kind], transform, c.key, c.certificate)


def offline() -> ValidationContext:
    """A file judged alone: no index, CA, original or expected kind (what `validate FILE` does)."""
    return ValidationContext()


def full(world, samples, **kw) -> ValidationContext:
    return ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl],
                             carried_original=samples.carried_original, **kw)


def cited(result: ValidationResult, verdict: Verdict, req: str, decision: str | None = None) -> bool:
    return any(f.verdict is verdict and req in f.requirements and (decision is None or f.decision == decision)
               for f in result.findings)


def show(result: ValidationResult) -> str:
    return "\n".join(f"  {f.verdict} {','.join(f.requirements)} [{f.check}] {f.message} ({f.decision})"
                     for f in result.findings if f.verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR, Verdict.INFO))


def verified(result: ValidationResult) -> bool:
    return any(f.verdict is Verdict.PASS and f.check == "signature.cms" and "SIG-01" in f.requirements
               for f in result.findings)


def fails(result: ValidationResult) -> list:
    return [f for f in result.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]


# ---------------------------------------------------------------------------------------------
# Classification from every clue


@pytest.mark.parametrize(("kind", "mutation", "decided_by"), [
    (K.ACCETTAZIONE, lambda raw: m.remove_header(raw, "X-Ricevuta"), "daticert"),
    (K.BUSTA_TRASPORTO, lambda raw: m.remove_header(raw, "X-Trasporto"), "daticert"),
    (K.BUSTA_ANOMALIA, lambda raw: m.rename_header(raw, "X-Trasporto", "X-Trasplorto"), "header name"),
    (K.CONSEGNA_COMPLETA, lambda raw: m.remove_header(raw, "X-Ricevuta"), "daticert"),
], ids=["accettazione-x-ricevuta-removed", "busta-trasporto-x-trasporto-removed",
        "busta-anomalia-x-trasplorto-erratum", "consegna-completa-x-ricevuta-removed"])
def test_pec_message_without_its_header_is_that_kind_with_a_fail(samples, kind, mutation, decided_by):
    result = check(mutation(samples.messages[kind]), offline())
    assert result.kind is kind, show(result)
    assert result.message.classification.decided_by == decided_by
    assert cited(result, Verdict.FAIL, "GEN-04"), show(result)
    note = [f for f in result.findings if f.verdict is Verdict.INFO and f.check == "headers.pec-type"
            and "clues agreeing" in f.message]
    assert note and "subject" in note[0].message and "disagreeing: none" in note[0].message, show(result)
    assert not cited(result, Verdict.INFO, "GEN-04", "D34"), "judged as ordinary mail"


def test_misspelt_header_name_fails_hdr_01_too(samples):
    result = check(m.rename_header(samples.messages[K.BUSTA_ANOMALIA], "X-Trasporto", "X-Trasplorto"), offline())
    assert any(f.verdict is Verdict.FAIL and {"GEN-04", "HDR-01"} <= set(f.requirements)
               and "X-Trasplorto" in f.message for f in result.findings), show(result)


def test_disagreeing_clue_is_named(samples):
    raw = m.set_header(samples.messages[K.ACCETTAZIONE], "Subject", "PRESA IN CARICO: Fattura n. 42")
    result = check(raw, offline())
    assert result.kind is K.ACCETTAZIONE  # the valid header decides
    note = next(f for f in result.findings if f.check == "headers.pec-type" and "clues agreeing" in f.message)
    assert "disagreeing: subject" in note.message and "presa-in-carico" in note.message
    assert cited(result, Verdict.FAIL, "FMT-18")


def test_subject_prefix_alone_on_unsigned_mail_is_ordinary():
    raw = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: POSTA CERTIFICATA: ciao\r\n"
           b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <u.1@example.org>\r\n\r\nciao\r\n")
    result = check(raw, offline())
    assert result.kind is K.ORDINARY and not fails(result), show(result)


# ---------------------------------------------------------------------------------------------
# Headers: Date, To, X-Riferimento-Message-ID


def test_date_in_year_one_fails_gen_06(samples):
    raw = m.set_header(samples.messages[K.ACCETTAZIONE], "Date", "Mon, 01 Jan 0001 00:00:00 +0000")
    assert cited(check(raw, offline()), Verdict.FAIL, "GEN-06")


def test_date_with_wrong_day_of_week_fails_gen_06(samples):
    value = m.get_header(samples.messages[K.ACCETTAZIONE], "Date")
    day = value[:3]
    other = "Sun" if day != "Sun" else "Mon"
    raw = m.set_header(samples.messages[K.ACCETTAZIONE], "Date", other + value[3:])
    assert cited(check(raw, offline()), Verdict.FAIL, "GEN-06")


@pytest.mark.parametrize("kind", [K.PRESA_IN_CARICO, K.RILEVAZIONE_VIRUS, K.ACCETTAZIONE])
def test_empty_to_fails_offline(samples, kind):
    result = check(m.set_header(samples.messages[kind], "To", ""), offline())
    assert cited(result, Verdict.FAIL, "GEN-01"), show(result)


def test_empty_to_on_envelope_fails_env_01(samples):
    result = check(m.set_header(samples.messages[K.BUSTA_ANOMALIA], "To", ""), offline())
    assert cited(result, Verdict.FAIL, "ENV-01"), show(result)


@pytest.mark.parametrize("kind", [K.BUSTA_ANOMALIA, K.PRESA_IN_CARICO, K.BUSTA_TRASPORTO])
def test_empty_riferimento_fails(samples, kind):
    raw = m.set_header(samples.messages[kind], "X-Riferimento-Message-ID", "")
    result = check(raw, offline())
    assert any(f.verdict is Verdict.FAIL and f.decision == "D31" and "empty" in f.message
               for f in result.findings), show(result)


# ---------------------------------------------------------------------------------------------
# Signature: attached content, truncation, bare LF (D35)


def test_attached_signature_inside_multipart_signed_fails_sig_01(world, samples):
    c = creds(world, K.ACCETTAZIONE)
    result = check(m.resign_attached(samples.messages[K.ACCETTAZIONE], c.key, c.certificate), full(world, samples))
    assert any(f.verdict is Verdict.FAIL and "SIG-01" in f.requirements and "attached" in f.message
               for f in result.findings), show(result)


def test_lost_p7s_and_close_delimiter_judges_what_is_there(samples):
    result = check(m.drop_signature_and_close(samples.messages[K.ACCETTAZIONE]), offline())
    assert result.kind is K.ACCETTAZIONE
    assert cited(result, Verdict.FAIL, "SIG-01"), show(result)
    assert not cited(result, Verdict.FAIL, "FMT-06") and not cited(result, Verdict.FAIL, "FMT-20"), show(result)
    assert cited(result, Verdict.PASS, "FMT-06") and cited(result, Verdict.PASS, "FMT-20"), show(result)


def test_bare_lf_inside_crlf_file_fails_sig_01(samples):
    raw = m.bare_lf_in_signed_content(samples.messages[K.ACCETTAZIONE])
    result = check(raw, offline())
    assert cited(result, Verdict.FAIL, "SIG-01", "D35"), show(result)
    assert not verified(result), "verified after rewriting the bare LF"


def test_signed_over_bare_lf_is_not_canonical(world, samples):
    raw = resign(world, samples, K.ACCETTAZIONE,
                 lambda b: m.replace_once(b, b"Content-Transfer-Encoding: quoted-printable\r\n",
                                          b"Content-Transfer-Encoding: quoted-printable\n"))
    result = check(raw, offline())
    assert cited(result, Verdict.FAIL, "SIG-01", "D35"), show(result)  # the digest matches, the form is wrong
    captured = check(raw, ValidationContext(captured_from_smtp=True))
    assert any(f.verdict is Verdict.FAIL and f.decision == "D35" and "SMTP" in f.message
               for f in captured.findings), show(captured)


def test_lf_only_file_verifies_canonically_but_captured_bytes_do_not(samples):
    raw = m.lf_line_ends(samples.messages[K.PRESA_IN_CARICO])
    stored = check(raw, offline())
    assert cited(stored, Verdict.PASS, "SIG-01") and cited(stored, Verdict.INFO, "SIG-01", "D35"), show(stored)
    assert not fails(stored), show(stored)
    captured = check(raw, ValidationContext(captured_from_smtp=True))
    assert cited(captured, Verdict.FAIL, "SIG-01", "D35") and not verified(captured), show(captured)


def test_captured_crlf_sample_passes(world, samples):
    for kind, raw in samples.messages.items():
        result = check(raw, replace(full(world, samples, expected_kind=kind), captured_from_smtp=True))
        assert not fails(result), f"{kind}:\n{show(result)}"


# ---------------------------------------------------------------------------------------------
# Receipts: the brief hash's name, the complete receipt that lost its original


def test_brief_hash_part_without_hash_suffix_fails_con_13_offline(world, samples):
    raw = resign(world, samples, K.CONSEGNA_BREVE, lambda b: m.edit_postacert(
        b, lambda body: body.replace(b"fattura-42.pdf.hash", b"fattura-42.pdf")))
    result = check(raw, offline())
    assert result.kind is K.CONSEGNA_BREVE
    assert cited(result, Verdict.FAIL, "CON-13", "D29"), show(result)


def _completa_without_original(world, samples) -> bytes:
    return resign(world, samples, K.CONSEGNA_COMPLETA, lambda b: m.drop_named_part(b, "postacert.eml"))


def test_complete_receipt_lost_original_fails_con_08_with_the_original(world, samples):
    ctx = full(world, samples)  # the original (--original) says the recipient was in To
    result = check(_completa_without_original(world, samples), ctx)
    assert cited(result, Verdict.FAIL, "CON-08"), show(result)


def test_complete_receipt_lost_original_is_undecided_offline(world, samples):
    result = check(_completa_without_original(world, samples), offline())
    assert cited(result, Verdict.INFO, "CON-08"), show(result)
    assert not cited(result, Verdict.PASS, "CON-17"), "offline, a lost original must not pass as concise"


def test_concise_receipt_for_cc_recipient_passes_with_the_original(world, samples):
    result = check(samples.messages[K.CONSEGNA_SINTETICA], full(world, samples))
    assert cited(result, Verdict.PASS, "CON-17"), show(result)
    assert not fails(result), show(result)


# ---------------------------------------------------------------------------------------------
# False FAILs that are gone


def _with_html(world, samples, kind: Kind, html_edit) -> bytes:
    return resign(world, samples, kind, lambda b: m.edit_text(
        b, lambda text, sub: html_edit(text) if sub == "html" else text))


def test_inline_style_without_references_passes_fmt_04(world, samples):
    raw = _with_html(world, samples, K.BUSTA_TRASPORTO,
                     lambda h: re.sub(r"(?i)<head>", "<head>" + NAMIRIAL_STYLE, h, count=1)
                     if "<head>" in h.lower() else NAMIRIAL_STYLE + h)
    assert len(NAMIRIAL_STYLE) == 88
    result = check(raw, full(world, samples, expected_kind=K.BUSTA_TRASPORTO))
    assert cited(result, Verdict.PASS, "FMT-04", "D33"), show(result)
    assert not fails(result), show(result)


@pytest.mark.parametrize("css", ["<style>body{background:url(http://x.example/a.png)}</style>",
                                 "<style>@import 'http://x.example/a.css';</style>",
                                 '<p style="width:expression(alert(1))">x</p>',
                                 '<link rel="stylesheet" href="http://x.example/a.css">'])
def test_style_that_loads_or_runs_something_fails_fmt_04(world, samples, css):
    raw = _with_html(world, samples, K.ACCETTAZIONE, lambda h: css + h)
    assert cited(check(raw, full(world, samples, expected_kind=K.ACCETTAZIONE)), Verdict.FAIL, "FMT-04", "D33")


def test_users_own_message_gets_no_format_fail():
    """A message written in a provider's webmail: UTF-8, 8-bit, HTML only. D34: not judged by FMT rules."""
    html = entity([("Content-Type", 'text/html; charset="utf-8"'), ("Content-Transfer-Encoding", "8bit")],
                  "<html><body><p>Città: è pronta</p><img src=\"cid:logo\"></body></html>\r\n".encode())
    raw = multipart("alternative", [html, text_part("Città: è pronta", "plain", "utf-8")], extra_fields=[
        ("From", "mario.rossi@pec.alfa.test"), ("To", "anna.bianchi@pec.beta.test"), ("Subject", "Fattura"),
        ("Date", "Mon, 23 Nov 2026 10:00:00 +0100"), ("Message-ID", "<web.1@pec.alfa.test>"),
        ("MIME-Version", "1.0")])
    result = check(raw, offline())
    assert result.kind is K.ORDINARY
    assert not [f for f in result.findings if any(r.startswith("FMT-") for r in f.requirements)], show(result)
    assert cited(result, Verdict.INFO, "GEN-04", "D34")


def test_daticert_alone_is_not_compared_with_an_absent_envelope(samples):
    raw = m.daticert_xml(samples.messages[K.BUSTA_TRASPORTO])
    result = validate_daticert(raw)
    assert result.kind is K.BUSTA_TRASPORTO
    assert not fails(result), show(result)


@pytest.mark.parametrize("kind", [K.BUSTA_TRASPORTO, K.CONSEGNA_COMPLETA, K.ACCETTAZIONE])
def test_list_copy_is_recognised_and_the_inner_message_judged(world, samples, kind):
    result = check(m.list_wrap(samples.messages[kind]), full(world, samples, expected_kind=kind))
    assert result.kind is kind
    assert cited(result, Verdict.INFO, "SIG-01", "D36"), show(result)
    assert not fails(result), show(result)
    assert cited(result, Verdict.PASS, "SIG-01")


def test_forwarded_as_attachment_is_recognised(world, samples):
    result = check(m.forward_as_attachment(samples.messages[K.CONSEGNA_SINTETICA]), full(world, samples))
    assert result.kind is K.CONSEGNA_SINTETICA
    assert cited(result, Verdict.INFO, "SIG-01", "D36") and not fails(result), show(result)


def test_list_copy_of_a_broken_message_still_fails(world, samples):
    broken = m.replace_once(samples.messages[K.ACCETTAZIONE], b"Ricevuta di accettazione", b"Ricevuta di accettazionE")
    result = check(m.list_wrap(broken), full(world, samples))
    assert cited(result, Verdict.FAIL, "SIG-01"), show(result)


def test_unsigned_mixed_without_list_clues_is_not_excused(samples):
    raw = m.unsigned(samples.messages[K.BUSTA_TRASPORTO])
    result = check(raw, offline())
    assert cited(result, Verdict.FAIL, "SIG-01") and not cited(result, Verdict.INFO, "SIG-01", "D36")


# ---------------------------------------------------------------------------------------------
# Certificates of the DigitPA era (D32)


def _legacy_cert(world, not_before: datetime):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = m.custom_certificate(world.ca, ALFA_NAME, ALFA_SERVICE, key, not_before=not_before,
                                not_after=datetime.now(UTC) + timedelta(days=300), key_usage_critical=False,
                                basic_constraints=True)
    return key, cert


@pytest.mark.parametrize(("year", "verdict"), [(2015, Verdict.WARN), (2017, Verdict.FAIL)])
def test_legacy_profile_warns_before_2017_and_fails_from_2017(world, samples, year, verdict):
    key, cert = _legacy_cert(world, datetime(year, 3, 1, tzinfo=UTC))
    raw = m.resign(samples.messages[K.ACCETTAZIONE], lambda b: b, key, cert)
    index = ProvidersIndex(index_records_from_providers([replace(world.alfa, certificate=cert), world.beta]))
    result = check(raw, replace(full(world, samples, expected_kind=K.ACCETTAZIONE), index=index))
    for rid in ("SIG-04", "SIG-07", "SIG-11"):
        assert cited(result, verdict, rid, "D32"), f"{rid}:\n{show(result)}"
    if verdict is Verdict.WARN:
        assert not fails(result), show(result)

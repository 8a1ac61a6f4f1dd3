"""Each requirement the validator can PASS can also FAIL (or, for a SHOULD, WARN) under the same ID.

One deviation per requirement, made with the project's own builders and mutations: the deviation is
judged under the requirement whose PASS the clean message gets, not only under a neighbouring one.
"""

from __future__ import annotations

import re

import mutate as m
import pytest

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import ValidationResult, check
from conformance.pec import pki
from conformance.pec.constants import Kind
from conformance.pec.index import ProvidersIndex, index_records_from_providers
from conformance.pec.samples import build_all_kinds

K = Kind
ALFA_KINDS = frozenset({K.ACCETTAZIONE, K.NON_ACCETTAZIONE, K.NON_ACCETTAZIONE_VIRUS, K.BUSTA_TRASPORTO,
                        K.MANCATA_CONSEGNA_VIRUS, K.PREAVVISO_12H, K.MANCATA_CONSEGNA_24H})


def creds(world, kind: Kind):
    return world.alfa if kind in ALFA_KINDS else world.beta


def full(world, samples, **kw) -> ValidationContext:
    return ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl],
                             carried_original=samples.carried_original, **kw)


def resigned(world, samples, kind: Kind, transform) -> bytes:
    c = creds(world, kind)
    return m.resign(samples.messages[kind], transform, c.key, c.certificate)


def verdicts(result: ValidationResult, req: str) -> set[Verdict]:
    return {f.verdict for f in result.findings if req in f.requirements}


def show(result: ValidationResult) -> str:
    return "\n".join(f"  {f.verdict} {','.join(f.requirements)} [{f.check}] {f.message}" for f in result.findings)


def judged(world, samples, kind: Kind, raw: bytes | None = None, **kw) -> ValidationResult:
    return check(samples.messages[kind] if raw is None else raw, full(world, samples, **kw))


def assert_pass(result: ValidationResult, req: str) -> None:
    seen = verdicts(result, req)
    assert Verdict.PASS in seen and not seen & {Verdict.FAIL, Verdict.WARN, Verdict.ERROR}, show(result)


def assert_only(result: ValidationResult, req: str, verdict: Verdict) -> None:
    seen = verdicts(result, req)
    assert verdict in seen and Verdict.PASS not in seen, show(result)


# ------------------------------------------------------------------------------------------ ENV-02, ANO-04


@pytest.mark.parametrize(("kind", "req"), [(K.BUSTA_TRASPORTO, "ENV-02"), (K.BUSTA_ANOMALIA, "ANO-04")])
def test_envelope_type_header_missing_fails_its_own_rule(world, samples, kind, req):
    assert_pass(judged(world, samples, kind), req)
    broken = m.remove_header(samples.messages[kind], "X-Trasporto")
    result = judged(world, samples, kind, broken)
    assert result.kind is kind, show(result)  # still the envelope, by its daticert / subject
    assert_only(result, req, Verdict.FAIL)


def test_envelope_type_header_wrong_value_fails_env_02(world, samples):
    broken = m.set_header(samples.messages[K.BUSTA_TRASPORTO], "X-Trasporto", "certified-mail")
    result = judged(world, samples, K.BUSTA_TRASPORTO, broken)
    assert_only(result, "ENV-02", Verdict.FAIL)


# ------------------------------------------------------------------------------------------ TXT-01


def _english(text: str, sub: str) -> str:
    return text.replace("Il giorno", "On", 1).replace("alle ore", "at", 1).replace(
        "Identificativo messaggio", "Message identifier", 1)


def test_text_in_english_warns_txt_01(world, samples):
    assert_pass(judged(world, samples, K.ACCETTAZIONE), "TXT-01")
    raw = resigned(world, samples, K.ACCETTAZIONE, lambda inner: m.edit_text(inner, _english))
    result = judged(world, samples, K.ACCETTAZIONE, raw)
    assert_only(result, "TXT-01", Verdict.WARN)  # a SHOULD: never FAIL, and no PASS for what was not seen
    assert Verdict.FAIL not in verdicts(result, "TXT-01")


# ------------------------------------------------------------------------------------------ TIM-04


def _iso_date(text: str, sub: str) -> str:
    return re.sub(r"(\d{2})/(\d{2})/(\d{4})", r"\3-\2-\1", text, count=1)


def _no_zone(text: str, sub: str) -> str:
    return re.sub(r"(\d{2}:\d{2}:\d{2}) \([+-]\d{2}:?\d{2}\)", r"\1", text, count=1)


@pytest.mark.parametrize("edit", [_iso_date, _no_zone], ids=["yyyy-mm-dd", "time-without-zone"])
def test_text_instant_not_readable_fails_tim_04(world, samples, edit):
    assert_pass(judged(world, samples, K.ACCETTAZIONE), "TIM-04")
    raw = resigned(world, samples, K.ACCETTAZIONE, lambda inner: m.edit_text(inner, edit))
    assert_only(judged(world, samples, K.ACCETTAZIONE, raw), "TIM-04", Verdict.FAIL)


def test_text_other_item_missing_keeps_tim_04(world, samples):
    """A missing subject is FMT-20's; the instant is still readable (TIM-04 PASS)."""
    found = re.search(rb"<oggetto>([^<]+)</oggetto>", m.daticert_xml(samples.messages[K.ACCETTAZIONE]))
    assert found
    oggetto = found.group(1).decode()
    raw = resigned(world, samples, K.ACCETTAZIONE,
                   lambda inner: m.edit_text(inner, lambda text, sub: text.replace(oggetto, "altro oggetto")))
    result = judged(world, samples, K.ACCETTAZIONE, raw)
    assert Verdict.FAIL in verdicts(result, "FMT-20"), show(result)
    assert_pass(result, "TIM-04")


# ------------------------------------------------------------------------------------------ GEN-06, GEN-09


@pytest.mark.parametrize("kind", [K.ACCETTAZIONE, K.CONSEGNA_COMPLETA, K.PRESA_IN_CARICO])
def test_notice_from_other_than_service_address_fails_gen_06_and_gen_09(world, samples, kind):
    clean = judged(world, samples, kind)
    assert any(f.verdict is Verdict.PASS and f.check == "headers.from" and {"GEN-06", "GEN-09"} <=
               set(f.requirements) for f in clean.findings), show(clean)
    domain = creds(world, kind).service_address.partition("@")[2]
    raw = m.set_header(samples.messages[kind], "From", f"ricevute@{domain}")
    result = judged(world, samples, kind, raw)
    assert_only(result, "GEN-09", Verdict.FAIL)
    assert any(f.verdict is Verdict.FAIL and f.check == "headers.from" and "GEN-06" in f.requirements
               for f in result.findings), show(result)


def test_envelope_from_other_than_service_address_fails_gen_09(world, samples):
    raw = samples.messages[K.BUSTA_TRASPORTO]
    assert_pass(judged(world, samples, K.BUSTA_TRASPORTO), "GEN-09")
    service = world.alfa.service_address
    broken = m.set_header(raw, "From", (m.get_header(raw, "From") or "").replace(
        service, "pec@" + service.partition("@")[2]))
    result = judged(world, samples, K.BUSTA_TRASPORTO, broken)
    assert_only(result, "GEN-09", Verdict.FAIL)
    assert Verdict.FAIL in verdicts(result, "ENV-05"), show(result)


def test_from_not_compared_without_index_is_no_pass(samples):
    """Offline (no providers index) the registered address is unknown: GEN-09 is not claimed."""
    result = check(samples.messages[K.ACCETTAZIONE], ValidationContext())
    assert verdicts(result, "GEN-09") == {Verdict.INFO}, show(result)


# ------------------------------------------------------------------------------------------ CON-12


def test_brief_receipt_keeping_a_named_part_fails_con_12(world, samples):
    assert_pass(judged(world, samples, K.CONSEGNA_BREVE), "CON-12")
    original = m.parts(samples.carried_original.removesuffix(b"\r\n"))
    attachment = original[m.index_of(original, "fattura-42.pdf")]

    def keep(body: bytes) -> bytes:
        return m.edit_parts(body, lambda ps: [attachment if m.part_name(p).endswith(".hash") else p for p in ps])

    raw = resigned(world, samples, K.CONSEGNA_BREVE, lambda inner: m.edit_postacert(inner, keep))
    result = judged(world, samples, K.CONSEGNA_BREVE, raw)
    # The original is still attached (structure.original's CON-12 PASS); its named part was not hashed.
    assert any(f.verdict is Verdict.FAIL and f.check == "receipts.brief-hashes" and "CON-12" in f.requirements
               for f in result.findings), show(result)
    assert not any(f.verdict is Verdict.PASS and f.check == "receipts.brief-hashes" for f in result.findings)
    assert Verdict.FAIL in verdicts(result, "CON-13"), show(result)


# ------------------------------------------------------------------------------------------ NOT-05


def test_virus_non_delivery_without_errore_virus_warns_not_05(world, samples):
    assert_pass(judged(world, samples, K.MANCATA_CONSEGNA_VIRUS), "NOT-05")
    raw = resigned(world, samples, K.MANCATA_CONSEGNA_VIRUS,
                   lambda inner: m.edit_daticert(inner, m.xml_replace(b'errore="virus"', b'errore="altro"')))
    result = judged(world, samples, K.MANCATA_CONSEGNA_VIRUS, raw)
    assert result.kind is K.MANCATA_CONSEGNA_VIRUS, show(result)
    # The errore-esteso half (a coded description) still passes; the errore half warns.
    errore = {f.verdict for f in result.findings if f.check == "daticert.errore" and "NOT-05" in f.requirements}
    assert errore == {Verdict.WARN}, show(result)
    assert Verdict.FAIL in verdicts(result, "FMT-09"), show(result)


# ------------------------------------------------------------------------------------------ SIG-05


def test_index_certificate_naming_another_organisation_fails_sig_05(world, samples, tmp_path):
    """The deployment's hook (ProviderSpec.certificate_organization): the certificate the index lists for
    the provider names another organisation in its subject."""
    from conformance.reference.faults import certificate_organization

    other = certificate_organization(["sig-cert-subject-other-name"])
    assert other and certificate_organization([]) is None
    layout = pki.write_pki_directory(tmp_path / "pki", [
        pki.ProviderSpec(world.alfa.provider_name, world.alfa.domains, certificate_organization=other),
        pki.ProviderSpec(world.beta.provider_name, world.beta.domains)])
    alfa = layout.provider(world.alfa.provider_name)
    assert other in alfa.certificate.subject.rfc4514_string()
    index = layout.index
    assert index.records_for_certificate(alfa.certificate)  # the very certificate the index lists

    def ctx(idx: ProvidersIndex) -> ValidationContext:
        return ValidationContext(index=idx, ca_certificates=[layout.ca.certificate], crls=[layout.crl])

    kind = K.ACCETTAZIONE
    raw = m.resign(samples.messages[kind], lambda inner: inner, alfa.key, alfa.certificate)
    assert_only(check(raw, ctx(index)), "SIG-05", Verdict.FAIL)
    # The same deployment without the defect: SIG-05 PASS.
    good = pki.make_provider(layout.ca, world.alfa.provider_name, world.alfa.domains)
    clean = m.resign(samples.messages[kind], lambda inner: inner, good.key, good.certificate)
    good_index = ProvidersIndex(index_records_from_providers([good, layout.provider(world.beta.provider_name)]))
    assert_pass(check(clean, ctx(good_index)), "SIG-05")


def test_samples_of_another_instant_keep_the_new_passes(world):
    """The checks above hold on a second set of samples too (another instant, SHA-1 digest)."""
    other = build_all_kinds(world, digest="sha1")
    for kind, req in [(K.ACCETTAZIONE, "TIM-04"), (K.ACCETTAZIONE, "GEN-09"), (K.BUSTA_TRASPORTO, "ENV-02"),
                      (K.CONSEGNA_BREVE, "CON-12"), (K.MANCATA_CONSEGNA_VIRUS, "NOT-05")]:
        result = check(other.messages[kind], ValidationContext(index=world.index, carried_original=other.carried_original))
        assert_pass(result, req)


def test_anomaly_around_the_providers_own_message_is_not_an_author_from(world, samples):
    """Around a PEC message the original sender may be the service address itself (D23): the anomaly
    envelope From that address is the provider's, not a forged author's."""
    kind = K.BUSTA_ANOMALIA
    service = creds(world, kind).service_address
    raw = m.set_header(samples.messages[kind], "Return-Path", f"<{service}>")
    result = judged(world, samples, kind, raw)
    assert Verdict.FAIL not in verdicts(result, "ANO-07"), show(result)
    assert_pass(result, "GEN-09")

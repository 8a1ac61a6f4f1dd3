"""The validator against genuine PEC messages of real providers (`$PEC_CORPUS` or `../shared/corpus/real`).

The files are third-party test data (see their PROVENANCE.tsv): they are read in place, never copied
into this repository. What each file must give:

- every file: no exception; every message: the kind the provenance records;
- "pristine" (signature and content digest verify): no FAIL or ERROR on integrity or format (the
  requirement groups FMT, GEN, ENV, CON, ACC, RIC, ANO, VIR, TMO, TIM, HDR, TXT, NOT, plus SIG-01,
  SIG-02, SIG-03 and SIG-19); stored with bare LF line ends, an INFO citing SIG-01 (verified in the
  canonical CRLF form);
- "MISMATCH" (altered after signing): a FAIL citing SIG-01 about the content digest, and the rest
  still judged;
- SHA-1 signatures: a WARN citing SIG-17 (decision D16), never a FAIL citing SIG-17 or SIG-19;
- without index or CA: a SKIP citing RIC-05 and one citing RIC-06, never a FAIL citing RIC-05.

Real deviations from the RFC 6109 section 5.5 certificate profile, judged under decision D32:

Old Aruba signer certificates, issued by "DigitPA CA1" (the regulator's own CA before AgID CA1), RSA-1024,
certificate signed with SHA-1, keyUsage present but NOT critical, basicConstraints (cA=FALSE,
non-critical) present:

  serial 0xd11 (valid 2014-02-10 .. 2017-02-10)
    l10n_it_pec_messages__tests__data__message1@dcae069
    l10n_it_pec_messages__tests__data__message2@6a00bc2
    l10n_it_pec_messages__tests__data__message2_accettazione@6546a50
    l10n_it_pec_messages__tests__data__message2_accettazione@9bea1e8
    l10n_it_pec_messages__tests__data__message2_consegna@6546a50
    l10n_it_pec_messages__tests__data__message2_consegna@9bea1e8
    mail__message-ok2.eml
  serial 0x3ed (valid 2011-03-31 .. 2014-03-31)
    mail__message_ko.eml
    mail__message_ok.eml

  -> valid from before 2017 (D32): WARN SIG-04 (RSA key of 1024 bits), WARN SIG-07 (keyUsage not
     critical), WARN SIG-11 (basicConstraints present), each naming D32, plus WARN SIG-04 (certificate
     signed with SHA-1, D16). The same deviations in a certificate from 2017 on FAIL (the mutation tests
     build one).

The newer Aruba (serial 0xbe0f2b61308a8b6) and Sogei (serial 0x19af91bde97fd68e) certificates, issued by
"AgID CA1", RSA-2048 with a critical keyUsage and no basicConstraints, follow the profile: no finding
on SIG-04, SIG-07 or SIG-11 other than PASS for the other files.

Where the corpus lives: the folder named by the environment variable PEC_CORPUS, else
`../shared/corpus/real` beside the repository. Without it every test here is skipped, saying so.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509

from conformance.checks.findings import Verdict
from conformance.checks.validator import ValidationResult, check
from conformance.pec import daticert as dc
from conformance.pec.constants import Kind
from conformance.pec.parse import ParsedMessage, parse_message


def _corpus_folder() -> Path:
    """`PEC_CORPUS` when set, else `../shared/corpus/real` beside the checkout."""
    given = os.environ.get("PEC_CORPUS")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


CORPUS = _corpus_folder()
PROVENANCE = CORPUS / "PROVENANCE.tsv"
DATICERT_ALONE = "mail__daticert.xml"

KIND_OF = {
    "envelope posta-certificata": Kind.BUSTA_TRASPORTO,
    "accettazione": Kind.ACCETTAZIONE,
    "avvenuta-consegna (completa)": Kind.CONSEGNA_COMPLETA,
}
INTEGRITY_OR_FORMAT_PREFIXES = ("FMT-", "GEN-", "ENV-", "CON-", "ACC-", "RIC-", "ANO-", "VIR-", "TMO-", "TIM-",
                                "HDR-", "TXT-", "NOT-")
INTEGRITY_OR_FORMAT_IDS = frozenset({"SIG-01", "SIG-02", "SIG-03", "SIG-19"})

OLD_ARUBA_1024 = frozenset({
    "l10n_it_pec_messages__tests__data__message1@dcae069",
    "l10n_it_pec_messages__tests__data__message2@6a00bc2",
    "l10n_it_pec_messages__tests__data__message2_accettazione@6546a50",
    "l10n_it_pec_messages__tests__data__message2_accettazione@9bea1e8",
    "l10n_it_pec_messages__tests__data__message2_consegna@6546a50",
    "l10n_it_pec_messages__tests__data__message2_consegna@9bea1e8",
    "mail__message-ok2.eml",
    "mail__message_ko.eml",
    "mail__message_ok.eml",
})
PROFILE_DEVIATIONS = ("SIG-04", "SIG-07", "SIG-11")

MISSING = (f"real-message corpus not found at {CORPUS} (set PEC_CORPUS to a folder with PROVENANCE.tsv, or "
           "place it at ../shared/corpus/real beside the checkout; CI sets PEC_REQUIRE_CORPUS=1 and runs these)")

# A user's clone has no corpus: skip with the reason. CI must run them: PEC_REQUIRE_CORPUS turns the skip
# into a failure, so a corpus that went missing cannot pass silently.
if not PROVENANCE.is_file():
    if os.environ.get("PEC_REQUIRE_CORPUS"):
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)


@dataclass(frozen=True)
class Row:
    file: str
    kind: str
    signature: str

    @property
    def pristine(self) -> bool:
        return "pristine" in self.signature

    @property
    def altered(self) -> bool:
        return "MISMATCH" in self.signature

    @property
    def sha1(self) -> bool:
        return "sha1" in self.signature

    @property
    def is_message(self) -> bool:
        return self.file != DATICERT_ALONE


def _rows() -> list[Row]:
    if not PROVENANCE.is_file():
        return [Row("<corpus missing>", "", "")]
    with PROVENANCE.open(newline="", encoding="utf-8") as fh:
        return [Row(r["file"], r["kind"], r["signature"]) for r in csv.DictReader(fh, delimiter="\t")]


ROWS = _rows()
MESSAGES = [r for r in ROWS if r.is_message]


def _ids(rows: list[Row]) -> list[str]:
    return [r.file for r in rows]


@cache
def _raw(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@cache
def _result(name: str) -> ValidationResult:
    return check(_raw(name))


@cache
def _parsed(name: str) -> ParsedMessage:
    return parse_message(_raw(name))


def _bad(result: ValidationResult) -> list:
    return [f for f in result.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]


def _show(findings) -> str:
    return "; ".join(f"{f.verdict} {','.join(f.requirements)} {f.message[:90]}" for f in findings)


def _cites(finding, *ids: str) -> bool:
    return bool(set(finding.requirements) & set(ids))


def _integrity_or_format(finding) -> bool:
    return any(rid.startswith(INTEGRITY_OR_FORMAT_PREFIXES) or rid in INTEGRITY_OR_FORMAT_IDS
               for rid in finding.requirements)


def test_corpus_present():
    assert CORPUS.is_dir() and PROVENANCE.is_file(), MISSING
    names = {p.name for p in CORPUS.iterdir()} - {PROVENANCE.name}
    assert names == {r.file for r in ROWS}, "PROVENANCE.tsv and the folder disagree"
    assert {r.kind for r in MESSAGES} <= set(KIND_OF), "a provenance kind this test does not map"
    assert any(r.pristine for r in MESSAGES) and any(r.altered for r in MESSAGES)


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_never_raises(row):
    parse_message(_raw(row.file))
    assert _result(row.file).findings


@pytest.mark.parametrize("row", MESSAGES, ids=_ids(MESSAGES))
def test_kind_matches_provenance(row):
    assert _result(row.file).kind is KIND_OF[row.kind]


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.pristine], ids=_ids([r for r in MESSAGES if r.pristine]))
def test_pristine_no_integrity_or_format_failure(row):
    result = _result(row.file)
    offending = [f for f in _bad(result) if _integrity_or_format(f)]
    assert offending == [], _show(offending)
    assert any(f.verdict is Verdict.PASS and f.check == "signature.cms" and "SIG-01" in f.requirements
               for f in result.findings), "signature did not verify"


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.pristine], ids=_ids([r for r in MESSAGES if r.pristine]))
def test_line_ends_noted(row):
    raw = _raw(row.file)
    noted = [f for f in _result(row.file).findings
             if f.verdict is Verdict.INFO and "SIG-01" in f.requirements and "CRLF" in f.message]
    if b"\r\n" not in raw:
        assert noted, "LF-only file verified without the canonical-CRLF INFO"
    else:
        assert noted == [], "CRLF file reported as stored with LF line ends"


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.altered], ids=_ids([r for r in MESSAGES if r.altered]))
def test_altered_reports_digest_mismatch_and_is_still_judged(row):
    result = _result(row.file)
    assert any(f.verdict is Verdict.FAIL and "SIG-01" in f.requirements and "digest" in f.message
               for f in result.findings), _show(_bad(result))
    assert result.kind is KIND_OF[row.kind]
    assert not any(f.check.startswith("parse.") for f in result.findings), "message not judged"
    judged_by = {f.check.split(".")[0] for f in result.findings}
    assert {"headers", "structure", "signature"} <= judged_by


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.sha1], ids=_ids([r for r in MESSAGES if r.sha1]))
def test_sha1_is_legacy_warning(row):
    findings = _result(row.file).findings
    assert any(f.verdict is Verdict.WARN and "SIG-17" in f.requirements for f in findings)
    assert not [f for f in findings if f.verdict is Verdict.FAIL and _cites(f, "SIG-17", "SIG-19")]


@pytest.mark.parametrize("row", MESSAGES, ids=_ids(MESSAGES))
def test_trust_skipped_without_index_or_ca(row):
    findings = _result(row.file).findings
    assert any(f.verdict is Verdict.SKIP and "RIC-05" in f.requirements for f in findings)
    assert any(f.verdict is Verdict.SKIP and "RIC-06" in f.requirements for f in findings)
    assert not [f for f in findings if f.verdict is Verdict.FAIL and "RIC-05" in f.requirements]


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.pristine], ids=_ids([r for r in MESSAGES if r.pristine]))
def test_pristine_has_no_fail_at_all(row):
    """Genuine mail of a real provider: nothing FAILs (the DigitPA-era certificates WARN under D32)."""
    result = _result(row.file)
    assert _bad(result) == [], _show(_bad(result))


@pytest.mark.parametrize("row", MESSAGES, ids=_ids(MESSAGES))
def test_certificate_profile_deviations_judged_under_d32(row):
    """Old Aruba RSA-1024 certificates deviate on SIG-04, SIG-07 and SIG-11: WARN under D32 (valid from before
    2017); the others deviate on none of them."""
    cert = _parsed(row.file).signature.verification.signer_certificate
    assert cert is not None
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    try:
        cert.extensions.get_extension_for_class(x509.BasicConstraints)
        has_basic_constraints = True
    except x509.ExtensionNotFound:
        has_basic_constraints = False
    old = row.file in OLD_ARUBA_1024
    # The docstring's table is the certificates' own truth.
    assert (cert.public_key().key_size == 1024) is old
    assert (not key_usage.critical) is old
    assert has_basic_constraints is old
    assert (cert.not_valid_before_utc.year < 2017) is old

    findings = _result(row.file).findings
    assert not [f for f in findings if f.verdict is Verdict.FAIL and _cites(f, *PROFILE_DEVIATIONS)], \
        _show(findings)
    legacy = [f for f in findings if f.verdict is Verdict.WARN and f.decision == "D32"]
    for rid in PROFILE_DEVIATIONS:
        cited = [f for f in legacy if rid in f.requirements]
        assert bool(cited) is old, f"{rid}: {_show(legacy)}"
    if old:
        assert any("SIG-04" in f.requirements and "1024" in f.message for f in legacy)
        assert any("SIG-07" in f.requirements and "critical" in f.message for f in legacy)
        assert any("SIG-11" in f.requirements and "basicConstraints" in f.message for f in legacy)
    else:
        assert any(f.verdict is Verdict.PASS and _cites(f, *PROFILE_DEVIATIONS) for f in findings)


@pytest.mark.parametrize("row", [r for r in MESSAGES if r.altered], ids=_ids([r for r in MESSAGES if r.altered]))
def test_altered_fails_a_signature_requirement(row):
    assert any(f.verdict is Verdict.FAIL and any(r.startswith("SIG-") for r in f.requirements)
               for f in _result(row.file).findings)


def test_daticert_alone_parses_but_is_not_a_message():
    raw = _raw(DATICERT_ALONE)
    assert raw.startswith((b"\xfe\xff", b"\xff\xfe")), "expected the UTF-16 BOM"
    d = dc.parse(raw)
    assert d.tipo == "posta-certificata"
    assert d.ricevuta == "completa"
    result = _result(DATICERT_ALONE)
    assert result.kind is Kind.UNKNOWN
    assert [f.verdict for f in result.findings] == [Verdict.ERROR], _show(result.findings)

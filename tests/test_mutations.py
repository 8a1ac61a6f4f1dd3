"""Single-defect mutations of valid PEC messages: each one must be caught by the validator.

Every unmodified sample of the 14 kinds validates with no FAIL. Each mutation below changes one thing
(an outer header field edited in place, or the signed content changed and signed again with the same
provider key so that only the intended defect remains) and asserts that a FAIL finding cites the
requirement the defect breaks, and that the S/MIME signature still verifies (no FAIL citing SIG-01)
unless the mutation is about the signature. Then a few deviations the decisions make WARN (or INFO),
and a few variants that must not fail at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, parsedate_to_datetime
from functools import cached_property

import mutate as m
import pytest

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import ValidationResult, check
from conformance.pec import pki
from conformance.pec.constants import PEC_KINDS, Kind
from conformance.pec.index import ProvidersIndex, index_records_from_providers
from conformance.pec.mime import encode_header_value
from conformance.pec.samples import SampleSet, SampleWorld, build_all_kinds, make_world, sample_original

# Kinds built (and signed) by the sender's provider alfa; beta signs the others.
ALFA_KINDS = frozenset({
    Kind.ACCETTAZIONE, Kind.NON_ACCETTAZIONE, Kind.NON_ACCETTAZIONE_VIRUS, Kind.BUSTA_TRASPORTO,
    Kind.MANCATA_CONSEGNA_VIRUS, Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H,
})
WINTER = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
SENDER = "mario.rossi@pec.alfa.test"
ANNA = "anna.bianchi@pec.beta.test"
LUIGI = "luigi.verdi@cert.beta.test"
ALFA_NAME = "Gestore Alfa S.p.A."
ALFA_SERVICE = "posta-certificata@pec.alfa.test"


# ---------------------------------------------------------------------------------------------
# The worlds the mutations start from


class Env:
    """Worlds, samples and the extra certificates, built once per module and only when first needed."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    @cached_property
    def world(self) -> SampleWorld:
        return make_world(self.now)

    @cached_property
    def samples(self) -> SampleSet:
        return build_all_kinds(self.world, instant=self.now)

    @cached_property
    def fixed_world(self) -> SampleWorld:
        # Certificates valid through 2026, so that both fixed instants lie in their validity.
        return make_world(datetime(2026, 1, 1, tzinfo=UTC))

    @cached_property
    def winter(self) -> SampleSet:
        return build_all_kinds(self.fixed_world, instant=WINTER)

    @cached_property
    def summer(self) -> SampleSet:
        return build_all_kinds(self.fixed_world, instant=SUMMER)

    @cached_property
    def no_msgid(self) -> SampleSet:
        return build_all_kinds(self.world, instant=self.now, original=sample_original(client_msgid=None))

    def base(self, name: str) -> tuple[SampleWorld, SampleSet]:
        return {
            "now": (self.world, self.samples),
            "winter": (self.fixed_world, self.winter),
            "summer": (self.fixed_world, self.summer),
            "no-msgid": (self.world, self.no_msgid),
        }[name]

    # Provider certificates that break one thing each. They reuse alfa's key (RSA generation is the
    # slow part), except the 1024-bit one.
    def _issue(self, **kwargs) -> tuple[object, object]:
        kwargs.setdefault("key", self.world.alfa.key)
        return pki.issue_provider_certificate(self.world.ca, ALFA_NAME, ALFA_SERVICE, **kwargs)

    @cached_property
    def outsider(self):
        return self._issue()

    @cached_property
    def expired(self):
        return self._issue(not_before=self.now - timedelta(days=400), not_after=self.now - timedelta(days=2))

    @cached_property
    def not_yet_valid(self):
        return self._issue(not_before=self.now + timedelta(days=30), not_after=self.now + timedelta(days=400))

    @cached_property
    def revocable(self):
        return self._issue()

    @cached_property
    def revoking_crl(self):
        cert = self.revocable[1]
        return pki.build_crl(self.world.ca, [(cert.serial_number, self.now - timedelta(hours=2))], now=self.now)

    @cached_property
    def foreign(self):
        foreign_ca = pki.generate_ca(now=self.now - timedelta(days=1))
        return pki.issue_provider_certificate(foreign_ca, ALFA_NAME, ALFA_SERVICE, key=self.world.alfa.key)

    @cached_property
    def rsa1024(self):
        return pki.issue_provider_certificate(self.world.ca, ALFA_NAME, ALFA_SERVICE, key_size=1024)

    @cached_property
    def with_basic_constraints(self):
        return self._issue(basic_constraints=True)

    @cached_property
    def with_critical_extension(self):
        return self._issue(critical_extra_extension=True)

    @cached_property
    def with_email_in_subject(self):
        return self._issue(email_in_subject=True)

    def _custom(self, **kwargs):
        key = self.world.alfa.key
        cert = m.custom_certificate(self.world.ca, ALFA_NAME, kwargs.pop("email", ALFA_SERVICE), key,
                                    not_before=self.now - timedelta(days=1), not_after=self.now + timedelta(days=300),
                                    **kwargs)
        return key, cert

    @cached_property
    def ku_without_digital_signature(self):
        return self._custom(digital_signature=False)

    @cached_property
    def ku_not_critical(self):
        return self._custom(key_usage_critical=False)

    @cached_property
    def ku_missing(self):
        return self._custom(key_usage=False)

    @cached_property
    def without_san(self):
        return self._custom(email=None)

    def index_with_alfa(self, certificate) -> ProvidersIndex:
        """The index with alfa's certificate replaced, to isolate a certificate-profile defect from RIC-05."""
        alfa = replace(self.world.alfa, certificate=certificate)
        return ProvidersIndex(index_records_from_providers([alfa, self.world.beta]))


@dataclass
class Target:
    """One sample message under mutation, with its world."""

    env: Env
    world: SampleWorld
    samples: SampleSet
    kind: Kind

    @property
    def raw(self) -> bytes:
        return self.samples.messages[self.kind]

    @property
    def creds(self):
        return self.world.alfa if self.kind in ALFA_KINDS else self.world.beta

    def resign(self, transform: m.Transform, raw: bytes | None = None, **kwargs) -> bytes:
        return m.resign(raw or self.raw, transform, self.creds.key, self.creds.certificate, **kwargs)

    def message(self, kind: Kind) -> bytes:
        return self.samples.messages[kind]

    @property
    def oggetto(self) -> str:
        return "Posta ordinaria" if self.kind is Kind.BUSTA_ANOMALIA else self.samples.transaction.oggetto


Mutation = Callable[[Target], bytes]
ContextEdit = Callable[[Env, ValidationContext], ValidationContext]


@dataclass(frozen=True)
class Case:
    id: str
    kind: Kind
    mutate: Mutation
    reqs: tuple[str, ...]  # a FAIL (or, for soft cases, the verdict below) must cite every one of them
    any_of: tuple[str, ...] = ()  # and, when given, a FAIL must cite at least one of these
    breaks_signature: bool = False
    base: str = "now"
    expected_kind: Kind | None = None  # defaults to `kind`
    context: ContextEdit | None = None
    bug: str | None = None  # a library bug: the test is a strict xfail
    verdict: Verdict = Verdict.FAIL
    also: Callable[[ValidationResult], None] | None = None  # further assertions


def context_for(env: Env, case: Case) -> ValidationContext:
    world, samples = env.base(case.base)
    ctx = ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl],
                            carried_original=samples.carried_original,
                            expected_kind=case.expected_kind or case.kind)
    return case.context(env, ctx) if case.context else ctx


def run(env: Env, case: Case) -> tuple[bytes, bytes, ValidationResult]:
    world, samples = env.base(case.base)
    target = Target(env, world, samples, case.kind)
    mutated = case.mutate(target)
    return target.raw, mutated, check(mutated, context_for(env, case))


def cited(result: ValidationResult, verdict: Verdict, req: str) -> bool:
    return any(f.verdict is verdict and req in f.requirements for f in result.findings)


def show(result: ValidationResult, *verdicts: Verdict) -> str:
    wanted = verdicts or (Verdict.FAIL, Verdict.WARN, Verdict.ERROR)
    return "\n".join(f"  {f.verdict} {','.join(f.requirements)} [{f.check}] {f.message} (expected {f.expected!r}, "
                     f"actual {f.actual!r})" for f in result.findings if f.verdict in wanted) or "  (none)"


# ---------------------------------------------------------------------------------------------
# Building blocks of the mutations


def hdr_set(name: str, value: str) -> Mutation:
    return lambda t: m.set_header(t.raw, name, value)


def hdr_add(name: str, value: str) -> Mutation:
    return lambda t: m.add_header(t.raw, name, value)


def hdr_del(name: str) -> Mutation:
    return lambda t: m.remove_header(t.raw, name)


def hdr_rename(old: str, new: str) -> Mutation:
    return lambda t: m.rename_header(t.raw, old, new)


def subject(prefix: str, tail: str | None = None) -> Mutation:
    return lambda t: m.set_header(t.raw, "Subject", encode_header_value(prefix + (tail or t.oggetto)))


def shift_date(delta: timedelta) -> Mutation:
    def go(t: Target) -> bytes:
        when = parsedate_to_datetime(m.get_header(t.raw, "Date")) + delta
        return m.set_header(t.raw, "Date", format_datetime(when))

    return go


def inner(fn: m.Transform) -> Mutation:
    """Edit the signed content and sign again with the issuing provider's key."""
    return lambda t: t.resign(fn)


def daticert(fn: m.Transform) -> Mutation:
    return inner(lambda b: m.edit_daticert(b, fn))


def text(fn: Callable[[str, str], str]) -> Mutation:
    return inner(lambda b: m.edit_text(b, fn))


def postacert(fn: m.Transform) -> Mutation:
    return inner(lambda b: m.edit_postacert(b, fn))


def xml_drop_all(tag: str) -> m.Transform:
    def go(xml: bytes) -> bytes:
        t = re.escape(tag.encode())
        new, count = re.subn(rb"\s*<" + t + rb">[^<]*</" + t + rb">", b"", xml)
        if not count:
            raise m.MutationError(f"no <{tag}>")
        return new

    return go


def with_part_of(kind: Kind, name: str) -> Mutation:
    """Add to the signed body the part called `name` of another sample (e.g. an envelope's postacert.eml)."""

    def go(t: Target) -> bytes:
        borrowed = m.parts_of(t.message(kind))
        part = borrowed[m.index_of(borrowed, name)]
        return t.resign(lambda b: m.add_part(b, part))

    return go


def sign_with(attr: str, **kwargs) -> Mutation:
    """The same message signed with one of Env's alternative (key, certificate) pairs."""

    def go(t: Target) -> bytes:
        key, cert = getattr(t.env, attr)
        return m.resign(t.raw, lambda b: b, key, cert, **kwargs)

    return go


def index_with(attr: str) -> ContextEdit:
    return lambda env, ctx: replace(ctx, index=env.index_with_alfa(getattr(env, attr)[1]))


def first_bytes_changed(old: bytes, new: bytes) -> Mutation:
    """Edit bytes of the signed body in place, without signing again."""
    return lambda t: m.replace_once(t.raw, old, new)


# --- the brief receipt's hash parts


def brief_edit(fn: m.Transform) -> Mutation:
    return postacert(fn)


def brief_hash(new: Callable[[bytes], bytes]) -> m.Transform:
    def go(body: bytes) -> bytes:
        found = re.findall(rb"(?m)^[0-9a-f]{40}(?=\r?$)", body)
        if len(found) != 1:
            raise m.MutationError(f"expected one SHA-1 line in the brief copy, found {len(found)}")
        return m.replace_once(body, found[0], new(found[0]))

    return go


def brief_unhashed(t: Target) -> bytes:
    """The brief copy with its .hash part replaced by the original attachment."""
    original = m.parts(t.samples.carried_original.removesuffix(b"\r\n"))
    attachment = original[m.index_of(original, "fattura-42.pdf")]

    def go(body: bytes) -> bytes:
        return m.edit_parts(body, lambda ps: [attachment if m.part_name(p).endswith(".hash") else p for p in ps])

    return t.resign(lambda b: m.edit_postacert(b, go))


# ---------------------------------------------------------------------------------------------
# FAIL mutations

K = Kind

SUBJECT_CASES = [
    Case("accettazione-subject-prefix-lowercase", K.ACCETTAZIONE, subject("Accettazione: "), ("FMT-18", "ACC-12")),
    Case("non-accettazione-subject-prefix-hyphenated", K.NON_ACCETTAZIONE, subject("AVVISO DI NON-ACCETTAZIONE: "),
         ("FMT-18", "ACC-10")),
    Case("non-accettazione-virus-subject-prefix-without-per-virus", K.NON_ACCETTAZIONE_VIRUS,
         subject("AVVISO DI NON ACCETTAZIONE: "), ("FMT-18", "VIR-03")),
    Case("busta-trasporto-subject-prefix-without-colon", K.BUSTA_TRASPORTO, subject("POSTA CERTIFICATA "),
         ("FMT-18", "ENV-04")),
    Case("presa-in-carico-subject-prefix-dash", K.PRESA_IN_CARICO, subject("PRESA IN CARICO - "), ("FMT-18", "RIC-10")),
    Case("busta-anomalia-subject-prefix-short", K.BUSTA_ANOMALIA, subject("ANOMALIA: "), ("FMT-18", "ANO-06")),
    Case("rilevazione-virus-subject-prefix-english", K.RILEVAZIONE_VIRUS, subject("SECURITY PROBLEM: "),
         ("FMT-18", "VIR-07")),
    Case("mancata-consegna-virus-subject-prefix-without-per-virus", K.MANCATA_CONSEGNA_VIRUS,
         subject("AVVISO DI MANCATA CONSEGNA: "), ("FMT-18", "VIR-10")),
    Case("consegna-completa-subject-prefix-ricevuta", K.CONSEGNA_COMPLETA, subject("RICEVUTA DI CONSEGNA: "),
         ("FMT-18", "CON-05")),
    Case("consegna-breve-subject-prefix-lowercase", K.CONSEGNA_BREVE, subject("Consegna: "), ("FMT-18", "CON-05")),
    Case("consegna-sintetica-subject-prefix-no-space", K.CONSEGNA_SINTETICA, subject("CONSEGNA:"),
         ("FMT-18", "CON-05")),
    Case("mancata-consegna-subject-prefix-short", K.MANCATA_CONSEGNA, subject("MANCATA CONSEGNA: "),
         ("FMT-18", "CON-19")),
    Case("preavviso-12h-subject-prefix-unabbreviated", K.PREAVVISO_12H,
         subject("AVVISO DI MANCATA CONSEGNA PER SUPERAMENTO TEMPO MASSIMO: "), ("FMT-18", "TMO-09")),
    Case("mancata-consegna-24h-subject-prefix-with-hours", K.MANCATA_CONSEGNA_24H,
         subject("AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO 24H: "), ("FMT-18", "TMO-09")),
    Case("consegna-sintetica-subject-tail-differs-from-oggetto", K.CONSEGNA_SINTETICA,
         subject("CONSEGNA: ", "Fattura n. 43 di novembre"), ("FMT-20",)),
    Case("accettazione-subject-tail-differs-from-oggetto", K.ACCETTAZIONE,
         subject("ACCETTAZIONE: ", "Re: Fattura n. 42"), ("FMT-20",)),
]

PEC_HEADER_CASES = [
    Case("accettazione-x-ricevuta-removed", K.ACCETTAZIONE, hdr_del("X-Ricevuta"), ("GEN-04",)),
    Case("accettazione-x-ricevuta-misspelt", K.ACCETTAZIONE, hdr_set("X-Ricevuta", "accetazione"),
         ("GEN-04", "FMT-19")),
    Case("presa-in-carico-x-ricevuta-twice", K.PRESA_IN_CARICO, hdr_add("X-Ricevuta", "accettazione"), ("GEN-04",)),
    Case("busta-trasporto-x-trasporto-underscore", K.BUSTA_TRASPORTO, hdr_set("X-Trasporto", "posta_certificata"),
         ("GEN-04", "FMT-19")),
    Case("busta-trasporto-x-trasporto-removed", K.BUSTA_TRASPORTO, hdr_del("X-Trasporto"), ("GEN-04",)),
    Case("busta-anomalia-x-trasplorto-erratum-typo", K.BUSTA_ANOMALIA, hdr_rename("X-Trasporto", "X-Trasplorto"),
         ("GEN-04",)),
    Case("consegna-completa-riferimento-removed", K.CONSEGNA_COMPLETA, hdr_del("X-Riferimento-Message-ID"),
         ("GEN-05",)),
    Case("busta-trasporto-riferimento-removed", K.BUSTA_TRASPORTO, hdr_del("X-Riferimento-Message-ID"), ("ENV-09",)),
    Case("mancata-consegna-riferimento-changed", K.MANCATA_CONSEGNA,
         hdr_set("X-Riferimento-Message-ID", "<m42.8@client.test>"), ("GEN-05",)),
    Case("non-accettazione-virus-verificasicurezza-removed", K.NON_ACCETTAZIONE_VIRUS,
         hdr_del("X-VerificaSicurezza"), ("VIR-03",)),
    Case("mancata-consegna-virus-verificasicurezza-removed", K.MANCATA_CONSEGNA_VIRUS,
         hdr_del("X-VerificaSicurezza"), ("VIR-10",)),
    Case("rilevazione-virus-x-mittente-removed", K.RILEVAZIONE_VIRUS, hdr_del("X-Mittente"), ("VIR-07",)),
    Case("rilevazione-virus-x-mittente-different", K.RILEVAZIONE_VIRUS, hdr_set("X-Mittente", ANNA), ("VIR-07",)),
    Case("busta-trasporto-tiporicevuta-semplice", K.BUSTA_TRASPORTO, hdr_set("X-TipoRicevuta", "semplice"),
         ("ENV-10",)),
    Case("busta-trasporto-tiporicevuta-disagrees-with-daticert", K.BUSTA_TRASPORTO,
         hdr_set("X-TipoRicevuta", "breve"), ("ENV-16",)),
    Case("busta-trasporto-tiporicevuta-not-the-requested-one", K.BUSTA_TRASPORTO,
         lambda t: t.resign(lambda b: m.edit_daticert(b, m.xml_replace(b'tipo="completa"', b'tipo="sintetica"')),
                            outer=lambda fields: [(n, "sintetica" if n.lower() == "x-tiporicevuta" else v)
                                                  for n, v in fields]),
         ("ENV-16",)),
    Case("busta-trasporto-sender-differs-from-from", K.BUSTA_TRASPORTO, hdr_add("Sender", SENDER), ("ENV-06",)),
    Case("busta-trasporto-reply-to-changed", K.BUSTA_TRASPORTO, hdr_set("Reply-To", ANNA), ("ENV-07",)),
    Case("busta-trasporto-bcc-leaks", K.BUSTA_TRASPORTO, hdr_add("Bcc", "nascosto@pec.beta.test"), ("ACC-08",)),
    Case("accettazione-bcc-leaks", K.ACCETTAZIONE, hdr_add("Bcc", "nascosto@pec.beta.test"), ("ACC-08", "GEN-03")),
]

FROM_TO_CASES = [
    Case("busta-trasporto-from-bare-service-address", K.BUSTA_TRASPORTO, hdr_set("From", ALFA_SERVICE),
         ("ENV-05",)),
    Case("busta-trasporto-from-display-name-unquoted", K.BUSTA_TRASPORTO,
         hdr_set("From", f"Per conto di: {SENDER} <{ALFA_SERVICE}>"), ("FMT-22",)),
    Case("busta-trasporto-from-display-name-unquoted-rejected", K.BUSTA_TRASPORTO,
         hdr_set("From", f"Per conto di: {SENDER} <{ALFA_SERVICE}>"), ("ENV-05",)),
    Case("busta-trasporto-from-names-another-sender", K.BUSTA_TRASPORTO,
         hdr_set("From", f'"Per conto di: {LUIGI}" <{ALFA_SERVICE}>'), ("ENV-05",)),
    Case("busta-trasporto-from-address-is-the-author", K.BUSTA_TRASPORTO,
         hdr_set("From", f'"Per conto di: {SENDER}" <{SENDER}>'), ("ENV-05", "SIG-03")),
    Case("busta-anomalia-from-bare-service-address", K.BUSTA_ANOMALIA,
         hdr_set("From", "posta-certificata@pec.beta.test"), ("ANO-07",)),
    Case("accettazione-from-not-certificate-email", K.ACCETTAZIONE, hdr_set("From", "notifiche@pec.alfa.test"),
         ("SIG-03",)),
    Case("accettazione-to-someone-else", K.ACCETTAZIONE, hdr_set("To", ANNA), ("GEN-01", "ACC-12")),
    Case("consegna-breve-to-sender-and-reply-to", K.CONSEGNA_BREVE, hdr_set("To", f"{SENDER}, {ANNA}"),
         ("GEN-01", "CON-05")),
    Case("presa-in-carico-to-the-user", K.PRESA_IN_CARICO, hdr_set("To", SENDER), ("RIC-10", "GEN-01")),
    Case("presa-in-carico-to-no-mailreceipt", K.PRESA_IN_CARICO, hdr_set("To", ALFA_SERVICE), ("IDX-11",)),
    Case("rilevazione-virus-to-the-user", K.RILEVAZIONE_VIRUS, hdr_set("To", SENDER), ("VIR-07", "GEN-01")),
    Case("preavviso-12h-to-the-recipient", K.PREAVVISO_12H, hdr_set("To", ANNA), ("TMO-09", "GEN-01")),
    Case("presa-in-carico-to-own-mailreceipt-not-the-senders", K.PRESA_IN_CARICO,
         hdr_set("To", "ricevute@pec.beta.test"), ("IDX-11",)),
    Case("rilevazione-virus-to-own-mailreceipt-not-the-senders", K.RILEVAZIONE_VIRUS,
         hdr_set("To", "ricevute@pec.beta.test"), ("IDX-11",)),
    Case("busta-anomalia-from-names-another-sender", K.BUSTA_ANOMALIA,
         hdr_set("From", '"Per conto di: ignoto@example.org" <posta-certificata@pec.beta.test>'), ("ANO-07",)),
    Case("busta-anomalia-reply-to-removed", K.BUSTA_ANOMALIA, hdr_del("Reply-To"), ("ANO-08",)),
    Case("busta-trasporto-to-differs-from-carried-original", K.BUSTA_TRASPORTO, hdr_set("To", ANNA), ("ENV-01",)),
]

DATE_ID_CASES = [
    Case("mancata-consegna-date-removed", K.MANCATA_CONSEGNA, hdr_del("Date"), ("GEN-06",)),
    Case("non-accettazione-date-malformed", K.NON_ACCETTAZIONE, hdr_set("Date", "23/11/2026 10:00:00"),
         ("GEN-06",)),
    Case("accettazione-date-one-hour-later", K.ACCETTAZIONE, shift_date(timedelta(hours=1)), ("TIM-02",)),
    Case("busta-trasporto-date-one-hour-earlier", K.BUSTA_TRASPORTO, shift_date(timedelta(hours=-1)),
         ("TIM-02", "ENV-03")),
    Case("busta-trasporto-message-id-differs-from-identificativo", K.BUSTA_TRASPORTO,
         hdr_set("Message-ID", "<opec.other.0123456789abcdef@pec.alfa.test>"), ("ENV-08",)),
    Case("busta-trasporto-message-id-malformed", K.BUSTA_TRASPORTO,
         hdr_set("Message-ID", "opec.no-brackets-no-domain"), ("ACC-15",)),
    Case("consegna-breve-message-id-removed", K.CONSEGNA_BREVE, hdr_del("Message-ID"), ("GEN-04",)),
    Case("non-accettazione-message-id-without-angle-brackets", K.NON_ACCETTAZIONE,
         hdr_set("Message-ID", "ric.20261123.abc@pec.alfa.test"), ("GEN-04",)),
    Case("rilevazione-virus-message-id-twice", K.RILEVAZIONE_VIRUS,
         hdr_add("Message-ID", "<ric.second@pec.beta.test>"), ("GEN-04",)),
    Case("busta-anomalia-message-id-not-inherited", K.BUSTA_ANOMALIA,
         hdr_set("Message-ID", "<anomalia.1@pec.beta.test>"), ("ANO-03",)),
]

DATICERT_CASES = [
    Case("accettazione-daticert-tipo-presa-in-carico", K.ACCETTAZIONE,
         daticert(m.xml_replace(b'tipo="accettazione"', b'tipo="presa-in-carico"')), ("FMT-08",)),
    Case("busta-trasporto-daticert-tipo-accettazione", K.BUSTA_TRASPORTO,
         daticert(m.xml_replace(b'tipo="posta-certificata"', b'tipo="accettazione"')), ("FMT-08", "ENV-13")),
    Case("presa-in-carico-daticert-tipo-outside-dtd", K.PRESA_IN_CARICO,
         daticert(m.xml_replace(b'tipo="presa-in-carico"', b'tipo="mancata-consegna"')), ("FMT-07", "FMT-08")),
    Case("accettazione-daticert-errore-virus", K.ACCETTAZIONE,
         daticert(m.xml_replace(b'errore="nessuno"', b'errore="virus"')), ("FMT-09",)),
    Case("non-accettazione-virus-daticert-errore-nessuno", K.NON_ACCETTAZIONE_VIRUS,
         daticert(m.xml_replace(b'errore="virus"', b'errore="nessuno"')), ("FMT-09",)),
    Case("mancata-consegna-24h-daticert-errore-outside-dtd", K.MANCATA_CONSEGNA_24H,
         daticert(m.xml_replace(b'errore="altro"', b'errore="superamento-tempi-massimi"')), ("FMT-07", "FMT-09")),
    Case("mancata-consegna-daticert-errore-nessuno", K.MANCATA_CONSEGNA,
         daticert(m.xml_replace(b'errore="no-dest"', b'errore="nessuno"')), ("CON-20",)),
    Case("mancata-consegna-daticert-errore-esteso-missing", K.MANCATA_CONSEGNA,
         daticert(m.xml_drop("errore-esteso")), ("FMT-17",)),
    Case("busta-trasporto-daticert-msgid-before-identificativo", K.BUSTA_TRASPORTO,
         daticert(m.xml_sub(rb"(<identificativo>[^<]*</identificativo>)(\s*)(<msgid>[^<]*</msgid>)", rb"\3\2\1")),
         ("FMT-07",)),
    Case("consegna-sintetica-daticert-risposte-missing", K.CONSEGNA_SINTETICA, daticert(m.xml_drop("risposte")),
         ("FMT-07",)),
    Case("accettazione-daticert-zona-summer-offset-in-winter", K.ACCETTAZIONE,
         daticert(m.xml_replace(b'zona="+0100"', b'zona="+0200"')), ("TIM-05",), base="winter"),
    Case("busta-trasporto-daticert-zona-winter-offset-in-summer", K.BUSTA_TRASPORTO,
         daticert(m.xml_replace(b'zona="+0200"', b'zona="+0100"')), ("TIM-05",), base="summer"),
    Case("presa-in-carico-daticert-zona-without-sign", K.PRESA_IN_CARICO,
         daticert(m.xml_sub(rb'zona="[+-](\d{4})"', rb'zona="\1"')), ("FMT-11", "FMT-07")),
    Case("consegna-completa-daticert-giorno-iso", K.CONSEGNA_COMPLETA,
         daticert(m.xml_sub(rb"<giorno>(\d\d)/(\d\d)/(\d{4})</giorno>", rb"<giorno>\3-\2-\1</giorno>")),
         ("FMT-11", "FMT-07")),
    Case("mancata-consegna-virus-daticert-identificativo-with-angle-brackets", K.MANCATA_CONSEGNA_VIRUS,
         daticert(m.xml_sub(rb"<identificativo>([^<]*)</identificativo>",
                            rb"<identificativo>&lt;\1&gt;</identificativo>")), ("FMT-24",)),
    Case("preavviso-12h-daticert-msgid-without-angle-brackets", K.PREAVVISO_12H,
         daticert(m.xml_replace(b"<msgid>&lt;m42.7@client.test&gt;</msgid>", b"<msgid>m42.7@client.test</msgid>")),
         ("FMT-13",)),
    Case("accettazione-daticert-destinatari-esterno-for-pec-domain", K.ACCETTAZIONE,
         daticert(m.xml_replace(b'<destinatari tipo="certificato">anna', b'<destinatari tipo="esterno">anna')),
         ("ACC-14", "FMT-10")),
    Case("mancata-consegna-daticert-destinatari-certificato-for-external", K.MANCATA_CONSEGNA,
         daticert(m.xml_replace(b'<destinatari tipo="esterno">', b'<destinatari tipo="certificato">')),
         ("FMT-10",)),
    Case("consegna-completa-daticert-consegna-missing", K.CONSEGNA_COMPLETA, daticert(m.xml_drop("consegna")),
         ("FMT-15",)),
    Case("rilevazione-virus-daticert-consegna-missing", K.RILEVAZIONE_VIRUS, daticert(m.xml_drop("consegna")),
         ("FMT-15",)),
    Case("mancata-consegna-daticert-consegna-not-among-destinatari", K.MANCATA_CONSEGNA,
         daticert(m.xml_replace(f"<consegna>{LUIGI}".encode(), b"<consegna>ignoto@cert.beta.test")),
         ("MUL-08",)),
    Case("presa-in-carico-daticert-ricezione-missing", K.PRESA_IN_CARICO, daticert(xml_drop_all("ricezione")),
         ("FMT-16",)),
    Case("presa-in-carico-daticert-ricezione-outside-destinatari", K.PRESA_IN_CARICO,
         daticert(m.xml_replace(f"<ricezione>{LUIGI}".encode(), b"<ricezione>ignoto@cert.beta.test")),
         ("MUL-03",)),
    Case("busta-trasporto-daticert-ricevuta-missing", K.BUSTA_TRASPORTO, daticert(m.xml_drop("ricevuta")),
         ("FMT-14", "ENV-13")),
    Case("consegna-completa-daticert-ricevuta-sintetica", K.CONSEGNA_COMPLETA,
         daticert(m.xml_replace(b'<ricevuta tipo="completa"/>', b'<ricevuta tipo="sintetica"/>')), ("FMT-14",)),
    Case("accettazione-daticert-not-well-formed", K.ACCETTAZIONE,
         daticert(m.xml_replace(b"</dati>", b"</dat>")), ("FMT-07",)),
    Case("non-accettazione-daticert-part-removed", K.NON_ACCETTAZIONE,
         inner(lambda b: m.drop_named_part(b, "daticert.xml")), ("FMT-06",)),
    Case("accettazione-daticert-part-misnamed", K.ACCETTAZIONE,
         inner(lambda b: m.edit_named_part(b, "daticert.xml", lambda p: p.replace(b"daticert.xml", b"dati.xml"))),
         ("FMT-06",)),
    Case("presa-in-carico-daticert-mittente-differs-from-text", K.PRESA_IN_CARICO,
         daticert(m.xml_replace(f"<mittente>{SENDER}".encode(), b"<mittente>mario.bianchi@pec.alfa.test")),
         ("FMT-20", "RIC-12")),
    Case("consegna-completa-text-without-identifier", K.CONSEGNA_COMPLETA,
         text(lambda s, _sub: re.sub(r"Identificativo messaggio: \S+", "", s)), ("FMT-20", "CON-07")),
    Case("accettazione-text-label-ordinaria-for-pec-recipient", K.ACCETTAZIONE,
         text(lambda s, _sub: re.sub(r'(anna\.bianchi@pec\.beta\.test \((?:"|&quot;))posta certificata',
                                     r"\1posta ordinaria", s)), ("ACC-14",)),
    Case("consegna-completa-identificativo-of-another-transaction", K.CONSEGNA_COMPLETA,
         inner(lambda b: m.edit_text(m.edit_daticert(b, m.xml_sub(rb"<identificativo>opec\.", b"<identificativo>opec.x")),
                                     lambda s, _sub: s.replace("Identificativo messaggio: opec.",
                                                               "Identificativo messaggio: opec.x"))),
         ("FMT-12",), context=lambda env, ctx: replace(ctx, identificativo=env.samples.identificativo)),
    Case("mancata-consegna-24h-text-without-recipient", K.MANCATA_CONSEGNA_24H,
         text(lambda s, _sub: s.replace(ANNA, "il destinatario")), ("FMT-20", "TMO-10")),
]

MIME_CASES = [
    Case("accettazione-text-charset-utf-8", K.ACCETTAZIONE,
         inner(lambda b: m.edit_text_part_header(b, "plain", lambda p: m.text_to_charset(p, "utf-8"))),
         ("FMT-03",)),
    Case("presa-in-carico-html-external-image", K.PRESA_IN_CARICO,
         text(lambda s, sub: s.replace("<body>", '<body><img src="http://tracker.example/p.gif">')
              if sub == "html" else s), ("FMT-04",)),
    Case("mancata-consegna-html-script", K.MANCATA_CONSEGNA,
         text(lambda s, sub: s.replace("</body>", "<script>alert(1)</script></body>") if sub == "html" else s),
         ("FMT-04",)),
    Case("consegna-sintetica-daticert-8bit", K.CONSEGNA_SINTETICA,
         inner(lambda b: m.edit_named_part(b, "daticert.xml", m.to_eight_bit)), ("FMT-02",)),
    Case("non-accettazione-alternative-plain-only", K.NON_ACCETTAZIONE,
         inner(lambda b: m.edit_parts(b, lambda ps: [m.edit_parts(ps[0], lambda alt: alt[:1]), *ps[1:]])),
         ("FMT-04",)),
    Case("preavviso-12h-body-multipart-related", K.PREAVVISO_12H,
         inner(lambda b: m.replace_once(b, b"Content-Type: multipart/mixed;", b"Content-Type: multipart/related;")),
         ("FMT-01",)),
    Case("accettazione-text-not-first-part", K.ACCETTAZIONE, inner(lambda b: m.edit_parts(b, m.swap_parts(0, 1))),
         ("FMT-01",)),
]

ORIGINAL_CASES = [
    Case("busta-trasporto-postacert-removed", K.BUSTA_TRASPORTO,
         inner(lambda b: m.drop_named_part(b, "postacert.eml")), ("ENV-12",)),
    Case("busta-anomalia-received-message-removed", K.BUSTA_ANOMALIA,
         inner(lambda b: m.drop_named_part(b, "postacert.eml")), ("ANO-02",)),
    # Without its original the parser reads the receipt as sintetica (a Cc recipient's receipt may say
    # ricevuta=completa, D5): the expected kind or the original's To/Cc tells, and the finding cites the
    # kind's rule (offline, without either, an INFO says the two cannot be told apart).
    Case("consegna-completa-postacert-removed", K.CONSEGNA_COMPLETA,
         inner(lambda b: m.drop_named_part(b, "postacert.eml")), (), any_of=("CON-05", "CON-08")),
    Case("consegna-completa-postacert-altered", K.CONSEGNA_COMPLETA,
         postacert(lambda body: m.replace_once(body, b"Buongiorno", b"Buonasera")), ("CON-08",)),
    Case("consegna-completa-postacert-riferimento-dropped", K.CONSEGNA_COMPLETA,
         postacert(lambda body: m.remove_header(body, "X-Riferimento-Message-ID")), ("CON-23",)),
    # With an original the parser reads a sintetica receipt as completa: again the expected kind tells.
    Case("consegna-sintetica-with-original", K.CONSEGNA_SINTETICA,
         with_part_of(K.CONSEGNA_COMPLETA, "postacert.eml"), (), any_of=("CON-05", "CON-17", "CON-09")),
    Case("preavviso-12h-with-original", K.PREAVVISO_12H, with_part_of(K.BUSTA_TRASPORTO, "postacert.eml"),
         ("TMO-10",)),
    Case("mancata-consegna-24h-with-original", K.MANCATA_CONSEGNA_24H,
         with_part_of(K.BUSTA_TRASPORTO, "postacert.eml"), ("TMO-10",)),
    Case("non-accettazione-with-original", K.NON_ACCETTAZIONE, with_part_of(K.BUSTA_TRASPORTO, "postacert.eml"),
         ("ACC-11",)),
    Case("non-accettazione-virus-with-original", K.NON_ACCETTAZIONE_VIRUS,
         with_part_of(K.BUSTA_TRASPORTO, "postacert.eml"), ("VIR-03",)),
    Case("rilevazione-virus-with-original", K.RILEVAZIONE_VIRUS, with_part_of(K.BUSTA_TRASPORTO, "postacert.eml"),
         ("VIR-09",)),
    Case("busta-anomalia-with-daticert", K.BUSTA_ANOMALIA, with_part_of(K.ACCETTAZIONE, "daticert.xml"),
         ("ANO-10",)),
    Case("busta-trasporto-carried-message-id-not-replaced", K.BUSTA_TRASPORTO,
         postacert(lambda body: m.set_header(body, "Message-ID", "<m42.7@client.test>")), ("ACC-16",)),
    Case("busta-trasporto-carried-riferimento-dropped", K.BUSTA_TRASPORTO,
         postacert(lambda body: m.remove_header(body, "X-Riferimento-Message-ID")), ("ACC-16",)),
    Case("busta-trasporto-bcc-inside-postacert", K.BUSTA_TRASPORTO,
         postacert(lambda body: m.add_header(body, "Bcc", "nascosto@pec.beta.test")), ("ACC-08",)),
    Case("consegna-completa-bcc-inside-postacert", K.CONSEGNA_COMPLETA,
         postacert(lambda body: m.add_header(body, "Bcc", "nascosto@pec.beta.test")), ("ACC-08",)),
]

BRIEF_CASES = [
    Case("consegna-breve-hash-wrong", K.CONSEGNA_BREVE,
         brief_edit(brief_hash(lambda h: b"0" * 40)), ("CON-13",)),
    Case("consegna-breve-hash-sha256", K.CONSEGNA_BREVE,
         brief_edit(brief_hash(lambda h: h + b"0" * 24)), ("CON-13",)),
    Case("consegna-breve-hash-not-hex", K.CONSEGNA_BREVE,
         brief_edit(brief_hash(lambda h: b"z" + h[1:])), ("CON-13",)),
    Case("consegna-breve-named-attachment-unhashed", K.CONSEGNA_BREVE, brief_unhashed, ("CON-13",)),
    Case("consegna-breve-structure-changed", K.CONSEGNA_BREVE,
         brief_edit(lambda body: m.edit_parts(body, lambda ps: ps[1:])), ("CON-12",)),
]

SIGNATURE_CASES = [
    Case("accettazione-signed-body-byte-changed", K.ACCETTAZIONE,
         first_bytes_changed(b"Ricevuta di accettazione", b"Ricevuta di accettazionE"), ("SIG-01",),
         breaks_signature=True),
    Case("busta-trasporto-daticert-changed-not-resigned", K.BUSTA_TRASPORTO,
         lambda t: m.edit_daticert_unsigned(t.raw, m.xml_replace(b'tipo="completa"', b'tipo="breve"')),
         ("SIG-01",), breaks_signature=True),
    Case("presa-in-carico-p7s-truncated", K.PRESA_IN_CARICO, lambda t: m.truncate_signature(t.raw), ("SIG-01",),
         breaks_signature=True),
    Case("consegna-completa-signature-part-removed", K.CONSEGNA_COMPLETA, lambda t: m.drop_signature_part(t.raw),
         ("SIG-01",), breaks_signature=True),
    Case("mancata-consegna-unsigned", K.MANCATA_CONSEGNA, lambda t: m.unsigned(t.raw), ("SIG-01",),
         breaks_signature=True),
    Case("busta-anomalia-unsigned", K.BUSTA_ANOMALIA, lambda t: m.unsigned(t.raw), ("SIG-01", "ANO-12"),
         breaks_signature=True),
    Case("busta-trasporto-micalg-sha-512-on-sha256", K.BUSTA_TRASPORTO,
         lambda t: m.edit_header_block(t.raw, lambda h: m.replace_once(h, b"micalg=sha-256", b"micalg=sha-512")),
         ("SIG-19",)),
    Case("accettazione-protocol-pkcs7-mime", K.ACCETTAZIONE,
         lambda t: m.edit_header_block(t.raw, lambda h: m.replace_once(
             h, b'protocol="application/pkcs7-signature"', b'protocol="application/pkcs7-mime"')),
         ("SIG-01", "SIG-19"), breaks_signature=True),
    Case("accettazione-signed-by-the-other-provider", K.ACCETTAZIONE,
         lambda t: m.resign(t.raw, lambda b: b, t.world.beta.key, t.world.beta.certificate), ("SIG-03",)),
    Case("busta-trasporto-signer-not-in-index", K.BUSTA_TRASPORTO, sign_with("outsider"), ("RIC-05", "IDX-10")),
    Case("accettazione-signer-from-foreign-ca", K.ACCETTAZIONE, sign_with("foreign"), ("RIC-06",)),
    Case("busta-trasporto-certificate-expired", K.BUSTA_TRASPORTO, sign_with("expired"), ("RIC-06",),
         context=index_with("expired")),
    Case("accettazione-certificate-not-yet-valid", K.ACCETTAZIONE, sign_with("not_yet_valid"), ("RIC-06",),
         context=index_with("not_yet_valid")),
    Case("busta-trasporto-certificate-revoked", K.BUSTA_TRASPORTO, sign_with("revocable"), ("RIC-06",),
         context=lambda env, ctx: replace(ctx, index=env.index_with_alfa(env.revocable[1]),
                                          crls=[env.revoking_crl])),
    Case("accettazione-rsa-1024-key", K.ACCETTAZIONE, sign_with("rsa1024"), ("SIG-04",),
         context=index_with("rsa1024")),
    Case("busta-trasporto-certificate-basic-constraints", K.BUSTA_TRASPORTO, sign_with("with_basic_constraints"),
         ("SIG-11",), context=index_with("with_basic_constraints")),
    Case("preavviso-12h-certificate-critical-extension", K.PREAVVISO_12H, sign_with("with_critical_extension"),
         ("SIG-12",), context=index_with("with_critical_extension")),
    Case("accettazione-keyusage-without-digital-signature", K.ACCETTAZIONE,
         sign_with("ku_without_digital_signature"), ("SIG-07",), context=index_with("ku_without_digital_signature")),
    Case("non-accettazione-keyusage-not-critical", K.NON_ACCETTAZIONE, sign_with("ku_not_critical"), ("SIG-07",),
         context=index_with("ku_not_critical")),
    Case("mancata-consegna-virus-keyusage-missing", K.MANCATA_CONSEGNA_VIRUS, sign_with("ku_missing"),
         ("SIG-07",), context=index_with("ku_missing")),
    Case("accettazione-certificate-without-san-email", K.ACCETTAZIONE, sign_with("without_san"),
         ("SIG-10", "SIG-06"), context=index_with("without_san")),
]

FAIL_CASES = [*SUBJECT_CASES, *PEC_HEADER_CASES, *FROM_TO_CASES, *DATE_ID_CASES, *DATICERT_CASES, *MIME_CASES,
              *ORIGINAL_CASES, *BRIEF_CASES, *SIGNATURE_CASES]


# ---------------------------------------------------------------------------------------------
# WARN / INFO deviations (no FAIL) and tolerated variants


def on_behalf_of(t: Target) -> bytes:
    value = m.get_header(t.raw, "From")
    return m.set_header(t.raw, "From", value.replace("Per conto di: ", "On behalf of: "))


def rename_daticert(new_name: bytes) -> Mutation:
    return inner(lambda b: m.edit_named_part(b, "daticert.xml", lambda p: p.replace(b"daticert.xml", new_name)))


SOFT_CASES = [
    Case("accettazione-sha1-signature", K.ACCETTAZIONE,
         lambda t: t.resign(lambda b: b, digest="sha1"), ("SIG-17",), verdict=Verdict.WARN),
    Case("busta-trasporto-tiporicevuta-missing", K.BUSTA_TRASPORTO, hdr_del("X-TipoRicevuta"), ("ENV-10",),
         verdict=Verdict.WARN,
         also=lambda r: pytest.fail("ENV-10 WARN without D20") if not any(
             f.verdict is Verdict.WARN and f.decision == "D20" for f in r.findings) else None),
    Case("busta-trasporto-from-on-behalf-of", K.BUSTA_TRASPORTO, on_behalf_of, ("ENV-05",), verdict=Verdict.WARN),
    Case("busta-anomalia-from-on-behalf-of", K.BUSTA_ANOMALIA, on_behalf_of, ("ANO-07",), verdict=Verdict.WARN),
    Case("consegna-completa-daticert-named-certdata", K.CONSEGNA_COMPLETA, rename_daticert(b"certdata.xml"),
         ("FMT-06",), verdict=Verdict.WARN),
    Case("accettazione-daticert-typed-text-xml", K.ACCETTAZIONE,
         inner(lambda b: m.edit_named_part(b, "daticert.xml", lambda p: m.replace_once(
             p, b"Content-Type: application/xml;", b"Content-Type: text/xml;"))), ("FMT-06",), verdict=Verdict.WARN),
    Case("mancata-consegna-errore-altro-for-unknown-mailbox", K.MANCATA_CONSEGNA,
         daticert(m.xml_replace(b'errore="no-dest"', b'errore="altro"')), ("NOT-02",), verdict=Verdict.WARN),
    Case("accettazione-risposte-empty", K.ACCETTAZIONE,
         daticert(m.xml_sub(rb"<risposte>[^<]*</risposte>", b"<risposte></risposte>")), ("FMT-07",),
         verdict=Verdict.WARN),
    Case("presa-in-carico-text-plain-only", K.PRESA_IN_CARICO,
         inner(lambda b: m.edit_parts(b, lambda ps: [m.parts(ps[0])[0], *ps[1:]])), ("FMT-25",),
         verdict=Verdict.WARN),
    Case("accettazione-certificate-email-in-subject", K.ACCETTAZIONE, sign_with("with_email_in_subject"),
         ("SIG-06",), verdict=Verdict.WARN, context=index_with("with_email_in_subject")),
    Case("preavviso-12h-errore-esteso-code-5.4.1", K.PREAVVISO_12H,
         daticert(m.xml_replace(b"<errore-esteso>4.4.7", b"<errore-esteso>5.4.1")), ("NOT-04",),
         verdict=Verdict.WARN),
    Case("mancata-consegna-24h-errore-esteso-code-4.4.7", K.MANCATA_CONSEGNA_24H,
         daticert(m.xml_replace(b"<errore-esteso>5.4.1", b"<errore-esteso>4.4.7")), ("NOT-04",),
         verdict=Verdict.WARN),
    Case("mancata-consegna-errore-esteso-without-code", K.MANCATA_CONSEGNA,
         daticert(m.xml_sub(rb"<errore-esteso>[^<]*</errore-esteso>",
                            b"<errore-esteso>indirizzo non valido</errore-esteso>")), ("NOT-01",),
         verdict=Verdict.WARN),
    Case("busta-trasporto-x-tiporicevuta-spelling", K.BUSTA_TRASPORTO, hdr_rename("X-TipoRicevuta", "X-Tiporicevuta"),
         ("HDR-01",), verdict=Verdict.INFO),
    Case("accettazione-x-ricevuta-lowercase-name", K.ACCETTAZIONE, hdr_rename("X-Ricevuta", "x-ricevuta"),
         ("HDR-01",), verdict=Verdict.INFO),
]


def lf_only(t: Target) -> bytes:
    return t.raw.replace(b"\r\n", b"\n")


def signature_passes(result: ValidationResult) -> None:
    assert cited(result, Verdict.PASS, "SIG-01"), show(result, Verdict.PASS, Verdict.INFO, Verdict.FAIL)


def lf_verified_canonically(result: ValidationResult) -> None:
    signature_passes(result)
    assert any(f.verdict is Verdict.INFO and "SIG-01" in f.requirements and "LF" in f.message
               and f.decision == "D35" for f in result.findings), show(result, Verdict.INFO)


def micalg_agrees(result: ValidationResult) -> None:
    assert cited(result, Verdict.PASS, "SIG-19"), show(result, Verdict.PASS, Verdict.FAIL)
    signature_passes(result)


def defaults_applied(result: ValidationResult) -> None:
    d = result.message.daticert
    assert d.errore == "nessuno" and d.errore_defaulted
    assert [r.tipo for r in d.destinatari] == ["certificato", "esterno", "certificato"]
    assert [r.tipo_defaulted for r in d.destinatari] == [True, False, True]
    assert any(f.verdict is Verdict.PASS and "FMT-09" in f.requirements and "default" in f.message
               for f in result.findings), show(result, Verdict.PASS)
    assert cited(result, Verdict.INFO, "FMT-10"), show(result, Verdict.INFO)


def doctype_noted(result: ValidationResult) -> None:
    assert cited(result, Verdict.INFO, "FMT-23"), show(result, Verdict.INFO)
    assert cited(result, Verdict.PASS, "FMT-07"), show(result, Verdict.PASS)


def hashes_verified(result: ValidationResult) -> None:
    assert cited(result, Verdict.PASS, "CON-13"), show(result, Verdict.PASS)


def no_riferimento(result: ValidationResult) -> None:
    assert result.message.daticert.msgid is None
    assert any(f.verdict is Verdict.PASS and f.decision == "D31" for f in result.findings), show(result, Verdict.PASS)




def without_carried_original(env: Env, ctx: ValidationContext) -> ValidationContext:
    return replace(ctx, carried_original=None)


TOLERATED_CASES = [
    Case("busta-trasporto-daticert-after-postacert", K.BUSTA_TRASPORTO,
         inner(lambda b: m.edit_parts(b, m.swap_parts(1, 2))), (), also=signature_passes),
    Case("consegna-completa-daticert-after-postacert", K.CONSEGNA_COMPLETA,
         inner(lambda b: m.edit_parts(b, m.swap_parts(1, 2))), (), also=signature_passes),
    Case("accettazione-x-pkcs7-signature-micalg-sha1", K.ACCETTAZIONE,
         lambda t: t.resign(lambda b: b, digest="sha1", protocol="application/x-pkcs7-signature", micalg="sha1"),
         (), also=micalg_agrees),
    Case("busta-trasporto-micalg-sha256-spelling", K.BUSTA_TRASPORTO,
         lambda t: m.edit_header_block(t.raw, lambda h: m.replace_once(h, b"micalg=sha-256", b"micalg=sha256")),
         (), also=micalg_agrees),
    Case("accettazione-lf-line-ends", K.ACCETTAZIONE, lf_only, (), also=lf_verified_canonically),
    Case("busta-trasporto-lf-line-ends", K.BUSTA_TRASPORTO, lf_only, (), also=lf_verified_canonically,
         context=without_carried_original),
    Case("consegna-breve-lf-line-ends", K.CONSEGNA_BREVE, lf_only, (), also=lf_verified_canonically,
         context=without_carried_original),
    Case("busta-trasporto-lf-line-ends-against-carried-original", K.BUSTA_TRASPORTO, lf_only, (),
         also=lf_verified_canonically),
    Case("consegna-breve-lf-line-ends-against-carried-original", K.CONSEGNA_BREVE, lf_only, (),
         also=lf_verified_canonically),
    Case("consegna-completa-lf-line-ends-against-carried-original", K.CONSEGNA_COMPLETA, lf_only, (),
         also=lf_verified_canonically),
    Case("accettazione-subject-base64-encoded-word", K.ACCETTAZIONE,
         lambda t: m.set_header(t.raw, "Subject", Header("ACCETTAZIONE: " + t.oggetto, "utf-8").encode()), ()),
    Case("busta-trasporto-sender-equals-from", K.BUSTA_TRASPORTO,
         lambda t: m.add_header(t.raw, "Sender", m.get_header(t.raw, "From")), ()),
    Case("rilevazione-virus-x-mittente-with-display-name", K.RILEVAZIONE_VIRUS,
         hdr_set("X-Mittente", f"Mario Rossi <{SENDER}>"), ()),
    Case("consegna-breve-hash-with-trailing-blank-lines", K.CONSEGNA_BREVE,
         brief_edit(brief_hash(lambda h: h + b"\r\n\r\n")), (), also=hashes_verified),
    Case("accettazione-daticert-dtd-defaults", K.ACCETTAZIONE,
         daticert(lambda x: m.replace_once(x, b' errore="nessuno"', b"").replace(
             b'<destinatari tipo="certificato">', b"<destinatari>")), (), also=defaults_applied),
    Case("presa-in-carico-daticert-with-doctype", K.PRESA_IN_CARICO,
         daticert(m.xml_replace(b"?>\n<postacert", b'?>\n<!DOCTYPE postacert SYSTEM "Postacert.dtd">\n<postacert')),
         (), also=doctype_noted),
    Case("consegna-breve-hash-upper-case", K.CONSEGNA_BREVE, brief_edit(brief_hash(lambda h: h.upper())), (),
         also=hashes_verified),
    Case("mancata-consegna-text-zone-with-colon", K.MANCATA_CONSEGNA,
         text(lambda s, _sub: re.sub(r"\(([+-]\d\d)(\d\d)\)", r"(\1:\2)", s)), ()),
    Case("consegna-sintetica-ricevuta-sintetica", K.CONSEGNA_SINTETICA,
         daticert(m.xml_replace(b'<ricevuta tipo="completa"/>', b'<ricevuta tipo="sintetica"/>')), ()),
    Case("accettazione-no-client-message-id", K.ACCETTAZIONE, lambda t: t.raw, (), base="no-msgid",
         also=no_riferimento),
    Case("busta-trasporto-no-client-message-id", K.BUSTA_TRASPORTO, lambda t: t.raw, (), base="no-msgid",
         also=no_riferimento),
]


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def env() -> Env:
    return Env()


def params(cases: list[Case]) -> list:
    out = []
    for c in cases:
        # Only an assertion may fail: a mutation that cannot be made raises MutationError, never hidden.
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=c.bug)] if c.bug else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_case_ids_are_unique():
    ids = [c.id for c in [*FAIL_CASES, *SOFT_CASES, *TOLERATED_CASES]]
    assert len(ids) == len(set(ids))
    assert len(FAIL_CASES) >= 70
    assert {c.kind for c in FAIL_CASES} == set(PEC_KINDS)


@pytest.mark.parametrize("kind", PEC_KINDS, ids=str)
def test_unmodified_samples_pass(env: Env, kind: Kind):
    for base in ("now", "winter", "summer"):
        world, samples = env.base(base)
        ctx = ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl],
                                carried_original=samples.carried_original, expected_kind=kind)
        result = check(samples.messages[kind], ctx)
        assert result.kind is kind
        assert result.count(Verdict.FAIL) == 0 and result.count(Verdict.ERROR) == 0, f"{base}:\n{show(result)}"
        assert cited(result, Verdict.PASS, "SIG-01")


@pytest.mark.parametrize("case", params(FAIL_CASES))
def test_mutation_fails(env: Env, case: Case):
    original, mutated, result = run(env, case)
    assert mutated != original, "the mutation changed nothing"
    missing = [r for r in case.reqs if not cited(result, Verdict.FAIL, r)]
    assert not missing, f"no FAIL citing {missing}; findings:\n{show(result)}"
    if case.any_of:
        assert any(cited(result, Verdict.FAIL, r) for r in case.any_of), \
            f"no FAIL citing any of {case.any_of}; findings:\n{show(result)}"
    if not case.breaks_signature:
        assert not cited(result, Verdict.FAIL, "SIG-01"), f"the mutation broke the signature:\n{show(result)}"
        assert result.count(Verdict.ERROR) == 0, show(result)
    if case.also:
        case.also(result)


@pytest.mark.parametrize("case", params(SOFT_CASES))
def test_deviation_is_soft(env: Env, case: Case):
    original, mutated, result = run(env, case)
    assert mutated != original, "the mutation changed nothing"
    assert result.count(Verdict.FAIL) == 0 and result.count(Verdict.ERROR) == 0, show(result)
    missing = [r for r in case.reqs if not cited(result, case.verdict, r)]
    assert not missing, f"no {case.verdict} citing {missing}; findings:\n{show(result, case.verdict)}"
    if case.also:
        case.also(result)


@pytest.mark.parametrize("case", params(TOLERATED_CASES))
def test_variant_is_tolerated(env: Env, case: Case):
    original, mutated, result = run(env, case)
    if case.base == "now":
        assert mutated != original, "the mutation changed nothing"
    assert result.kind is case.kind
    assert result.count(Verdict.FAIL) == 0 and result.count(Verdict.ERROR) == 0, show(result)
    if case.also:
        case.also(result)

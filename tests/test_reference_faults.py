"""Every fault of the reference provider's catalogue is observed by the suite.

For each fault in `conformance.reference.faults.FAULTS` a flow is run with the fault switched on (an
access or tracking fault in alfa, the sender side; an incoming or delivery fault in beta, the
recipient side) and a probe reads what came out:

- a fault in one message (a daticert or message transform) is shown by the validator: the emitted
  message of the affected kind, judged with the provider's context, has a finding with the verdict the
  catalogue declares on one of the requirement IDs the fault names;
- a fault in a flow (a notice missing, sent twice, sent to the wrong party, a virus forwarded) is shown
  by watching the flow with deadlines; the probe states the deviation as verdicts per requirement, so
  the mapping fault -> requirement is checked too.

Every flow is also run without faults: none of its probes then observes a deviation and every message
it validates has no FAIL (the control). A fault added to the catalogue without a scenario here fails
`test_catalogue_is_complete_and_covered`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import getaddresses, parsedate_to_datetime

import faultharness as fh
import pytest
from faultharness import SIDES, UNKNOWN_BETA, Run
from refharness import ALFA_USER, ALFA_USER2, BETA_USER, BETA_USER2, FAST_TIMERS, SILENT_USER

from conformance.catalogue import load_catalogue
from conformance.checks.findings import Verdict
from conformance.checks.validator import check
from conformance.pec.build import rewrite_original
from conformance.pec.constants import Kind
from conformance.pec.parse import parse_message
from conformance.reference.faults import CATALOGUE, FAULTS, Fault
from conformance.reference.virus import Scanner

CONSEGNE = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)
TIMEOUTS = (Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H)
SCANNER = Scanner("eicar")


# ---------------------------------------------------------------------------------------------- observations


@dataclass
class Observation:
    """What a probe saw: verdicts per requirement, and the FAIL/ERROR findings of the messages it judged."""

    verdicts: dict[str, set[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, verdict: str, *requirements: str) -> None:
        for r in requirements:
            self.verdicts.setdefault(r, set()).add(verdict)

    def merge(self, other: Observation) -> Observation:
        for r, vs in other.verdicts.items():
            self.verdicts.setdefault(r, set()).update(vs)
        self.failures += other.failures
        self.note = "; ".join(x for x in (self.note, other.note) if x)
        return self

    def shows(self, fault: Fault) -> bool:
        """A finding with the verdict the catalogue declares on one of the fault's requirements."""
        return any(fault.verdict in self.verdicts.get(r, ()) for r in fault.requirements)


def judged(messages: list[bytes], run: Run, kind: Kind, context: str, carried: bytes | None) -> Observation:
    obs = Observation()
    ctx = replace(run.contexts[context], expected_kind=kind, carried_original=carried)
    for raw in messages:
        result = check(raw, ctx)
        for f in result.findings:
            for r in f.requirements:
                obs.verdicts.setdefault(r, set()).add(str(f.verdict))
            if f.verdict in (Verdict.FAIL, Verdict.ERROR):
                obs.failures.append(f"{kind}: {f.verdict} {f.requirements} {f.check}: {f.message} "
                                    f"[expected {f.expected} / actual {f.actual}]")
    obs.note = f"{len(messages)} {kind} judged"
    return obs


def parsed(raw: bytes):
    return parse_message(raw)


def consegna_of(raw: bytes) -> str | None:
    d = parsed(raw).daticert
    return d.consegna.lower() if d is not None and d.consegna else None


def kinds_in(messages: list[bytes]) -> list[Kind]:
    return [parsed(m).kind for m in messages]


# ---------------------------------------------------------------------------------------------- carried originals


def envelope_original(run: Run, box: str = BETA_USER) -> bytes:
    """The original as the envelope in a beta user's mailbox carried it (postacert.eml)."""
    envelopes = run.box(box, Kind.BUSTA_TRASPORTO)
    assert envelopes, f"no envelope reached {box}: {kinds_in(run.boxes.get(box, []))}"
    carried = parsed(envelopes[0]).postacert
    assert carried is not None
    return carried


def submitted_rewritten(run: Run) -> bytes:
    """What the envelope must carry: the submission as sent, with the ACC-16 Message-ID handling."""
    submitted = run.extra["submitted"][0]
    envelope = run.outbox("alfa", Kind.BUSTA_TRASPORTO)[0].parsed
    client = parsed(submitted).header("Message-ID")
    return rewrite_original(submitted, envelope.daticert.identificativo, client)


# ---------------------------------------------------------------------------------------------- probes


def emitted(kind: Kind, source: str, *, context: str | None = None,
            carried: Callable[[Run], bytes] | None = None) -> Callable[[Run], Observation]:
    """Judge the messages of `kind` that a provider's outbox sent (source "alfa" / "beta") or that a
    mailbox holds (source an address), with that provider's context."""

    def probe(run: Run) -> Observation:
        if source in run.sent:
            messages = [s.data for s in run.outbox(source, kind)]
            ctx = context or source
        else:
            messages = run.box(source, kind)
            ctx = context or ("alfa" if source.endswith("alfa.test") else "beta")
        assert messages, f"the flow emitted no {kind} ({source}); outbox kinds: " \
                         f"{[s.kind for s in run.sent.get(source, [])]}"
        return judged(messages, run, kind, ctx, carried(run) if carried else None)

    probe.single = kind  # type: ignore[attr-defined]
    return probe


def p_no_accettazione(run: Run) -> Observation:
    obs = Observation()
    assert run.box(BETA_USER, Kind.BUSTA_TRASPORTO), "the envelope did not reach anna"
    assert any(consegna_of(m) == BETA_USER for m in run.boxes[ALFA_USER] if parsed(m).kind in CONSEGNE), \
        "no consegna for anna"
    if not run.box(ALFA_USER, Kind.ACCETTAZIONE) and not run.outbox("alfa", Kind.ACCETTAZIONE):
        obs.add("FAIL", "ACC-12")
        obs.note = "envelope delivered and consegna back, but no accettazione for mario"
    return obs


def p_formal_check_skipped(requirements: tuple[str, ...], what: str) -> Callable[[Run], Observation]:
    """A submission the access point must not accept got an accettazione and an envelope instead of a
    non-accettazione."""

    def probe(run: Run) -> Observation:
        obs = Observation()
        accepted = run.box(ALFA_USER, Kind.ACCETTAZIONE) or run.outbox("alfa", Kind.ACCETTAZIONE)
        refused = run.outbox("alfa", Kind.NON_ACCETTAZIONE)
        envelope = run.outbox("alfa", Kind.BUSTA_TRASPORTO)
        if accepted and envelope and not refused:
            obs.add("FAIL", *requirements)
            obs.note = f"{what}: accettazione and envelope, no non-accettazione"
        else:
            assert refused and not envelope, f"{what}: neither refused nor accepted ({run.replies})"
        return obs

    return probe


def p_sender_mismatch(run: Run) -> Observation:
    obs = Observation()
    reply = run.replies[0]
    if reply.startswith("250"):
        obs.add("FAIL", "ACC-19")
        to_giulia = [s for s in run.outbox("alfa", Kind.ACCETTAZIONE) if s.rcpts == [ALFA_USER2]]
        obs.note = f"mario submitted as giulia and got {reply!r}; accettazioni to giulia: {len(to_giulia)}"
    else:
        assert reply.startswith("553"), reply
        assert not run.outbox("alfa", Kind.BUSTA_TRASPORTO)
    return obs


def p_virus_not_detected(run: Run) -> Observation:
    obs = Observation()
    infected = [s for s in run.outbox("alfa", Kind.BUSTA_TRASPORTO) if SCANNER.scan(s.data)]
    notice = run.outbox("alfa", Kind.NON_ACCETTAZIONE_VIRUS)
    if infected and not notice:
        obs.add("FAIL", "VIR-02")
        obs.note = (f"an envelope carrying EICAR left alfa for {infected[0].rcpts}; beta quarantined "
                    f"{len(run.quarantined['beta'])} message(s)")
    else:
        assert notice and not infected and run.quarantined["alfa"]
    return obs


def p_no_presa(run: Run) -> Observation:
    obs = Observation()
    assert any(consegna_of(m) == BETA_USER for m in run.boxes[ALFA_USER] if parsed(m).kind in CONSEGNE), \
        "the consegna for anna did not arrive"
    presa = run.outbox("beta", Kind.PRESA_IN_CARICO)
    tracked = [r for r in run.tracking if r["recipient"] == BETA_USER and r["presa_at"] is not None]
    if not presa and not tracked:
        obs.add("FAIL", "RIC-09")
        obs.note = "consegna arrived, but beta sent no presa in carico and alfa's timers never saw one"
    else:
        assert presa and tracked
        assert all(s.rcpts == [run.receipt_mailbox["alfa"]] for s in presa)
    return obs


def p_presa_to_user(run: Run) -> Observation:
    obs = Observation()
    assert run.outbox("beta", Kind.PRESA_IN_CARICO), "beta sent no presa in carico at all"
    holders = [u for u, box in run.boxes.items() if Kind.PRESA_IN_CARICO in kinds_in(box)]
    if holders:
        obs.add("FAIL", "GEN-07")
        obs.note = f"presa in carico in the mailbox of {holders}"
    return obs


def p_no_consegna(run: Run) -> Observation:
    obs = Observation()
    delivered = [u for u in (BETA_USER, BETA_USER2) if run.box(u, Kind.BUSTA_TRASPORTO)]
    assert delivered, "the envelope reached no beta mailbox"
    receipts = {consegna_of(m) for m in run.boxes[ALFA_USER] if parsed(m).kind in CONSEGNE}
    missing = [u for u in delivered if u not in receipts]
    if missing:
        obs.add("FAIL", "CON-06", "RIC-09")
        obs.note = f"envelope delivered to {missing} but no consegna for them"
    return obs


def p_cc_gets_completa(run: Run) -> Observation:
    """CON-09 at flow level: the receipt alone does not say whether its recipient was in To or Cc."""
    obs = Observation()
    envelope = parsed(run.box(BETA_USER2, Kind.BUSTA_TRASPORTO)[0])
    to = {a.lower() for _, a in getaddresses(envelope.header_all("to"))}
    cc = {a.lower() for _, a in getaddresses(envelope.header_all("cc"))} - to
    assert BETA_USER2 in cc
    complete = [consegna_of(m) for m in run.box(ALFA_USER, Kind.CONSEGNA_COMPLETA)]
    assert BETA_USER in complete, "the To recipient did not get its complete receipt"
    wrong = [r for r in complete if r in cc]
    if wrong:
        obs.add("FAIL", "CON-09")
        obs.note = f"complete receipt for the Cc recipient(s) {wrong}"
    else:
        sintetica = [consegna_of(m) for m in run.box(ALFA_USER, Kind.CONSEGNA_SINTETICA)]
        assert BETA_USER2 in sintetica
    return obs


def p_key_outside_index(run: Run) -> Observation:
    """The envelope's signer is not in the index: the validator, with beta's context, cites RIC-05; and
    beta itself must agree, treating the envelope as an anomaly (no presa in carico, no consegna)."""
    obs = emitted(Kind.BUSTA_TRASPORTO, "alfa", context="beta")(run)
    outside = "FAIL" in obs.verdicts.get("RIC-05", ())
    delivered = bool(run.box(BETA_USER, Kind.BUSTA_TRASPORTO))
    if outside:
        assert run.box(BETA_USER, Kind.BUSTA_ANOMALIA) and not delivered, "beta took the envelope as PEC"
        assert not run.outbox("beta", Kind.PRESA_IN_CARICO) and not run.outbox("beta", Kind.CONSEGNA_COMPLETA)
        obs.note += "; beta delivered it to anna as an anomaly, no presa in carico, no consegna"
    else:
        assert delivered and run.outbox("beta", Kind.PRESA_IN_CARICO)
    return obs


def p_no_mancata(run: Run) -> Observation:
    obs = Observation()
    received = [e for e in run.events["beta"] if e["event"] == "envelope-received"]
    assert received, "beta never received the envelope"
    assert run.outbox("beta", Kind.PRESA_IN_CARICO), "no presa in carico for the unknown mailbox"
    if not run.outbox("beta", Kind.MANCATA_CONSEGNA) and not run.box(ALFA_USER, Kind.MANCATA_CONSEGNA):
        obs.add("FAIL", "CON-18")
        obs.note = f"envelope for {UNKNOWN_BETA} received by beta, no non-delivery notice"
    return obs


def _rilevazioni(run: Run):
    return run.outbox("beta", Kind.RILEVAZIONE_VIRUS)


def p_virus_forwarded(run: Run) -> Observation:
    obs = Observation()
    infected = [m for m in run.boxes[BETA_USER] if SCANNER.scan(m)]
    if infected:
        obs.add("FAIL", "VIR-05")
        obs.note = f"{len(infected)} infected message(s) in anna's mailbox: {kinds_in(infected)}"
    else:
        assert run.quarantined["beta"], "no virus in anna's mailbox, but nothing quarantined either"
    return obs


def p_no_rilevazione(run: Run) -> Observation:
    obs = Observation()
    assert run.quarantined["beta"], "beta did not detect the virus"
    if not _rilevazioni(run):
        obs.add("FAIL", "VIR-07", "VIR-08")
        obs.note = "virus quarantined by beta, no rilevazione virus sent"
    return obs


def p_rilevazione_to_user(run: Run) -> Observation:
    obs = Observation()
    notices = _rilevazioni(run)
    assert notices, "no rilevazione virus"
    wrong = [s.rcpts for s in notices if s.rcpts != [run.receipt_mailbox["alfa"]]]
    if wrong:
        obs.add("FAIL", "VIR-07", "GEN-01")
        obs.note = f"rilevazione virus sent to {wrong}, not to {run.receipt_mailbox['alfa']}"
    return obs


def p_no_virus_notice(run: Run) -> Observation:
    obs = Observation()
    got = [e for e in run.events["alfa"] if e["event"] == "service-notice" and e["kind"] == str(Kind.RILEVAZIONE_VIRUS)]
    assert got, "alfa's service mailbox never got the rilevazione virus"
    if not run.outbox("alfa", Kind.MANCATA_CONSEGNA_VIRUS) and not run.box(ALFA_USER, Kind.MANCATA_CONSEGNA_VIRUS):
        obs.add("FAIL", "VIR-10")
        obs.note = "rilevazione virus received, no virus non-delivery notice for mario"
    return obs


def p_sha1_refused(run: Run) -> Observation:
    obs = Observation()
    envelope = run.outbox("alfa", Kind.BUSTA_TRASPORTO)[0].parsed
    assert envelope.signature.verification.digest_algorithm == "sha1"
    if run.box(BETA_USER, Kind.BUSTA_ANOMALIA) and not run.box(BETA_USER, Kind.BUSTA_TRASPORTO):
        obs.add("FAIL", "SIG-19")
        obs.note = "a correctly signed SHA-1 envelope was treated as an anomaly"
    else:
        assert run.box(BETA_USER, Kind.BUSTA_TRASPORTO) and run.box(ALFA_USER, Kind.CONSEGNA_COMPLETA)
    return obs


def p_unverified_as_pec(run: Run) -> Observation:
    """A copy of a delivered envelope that fails verification (unsigned: RIC-04; forged: RIC-06), handed to
    beta again: it must be ordinary mail (RIC-14, an anomaly here), never delivered as PEC nor acknowledged."""
    obs = Observation()
    before, injected = run.extra["before"], run.extra["injected"]
    assert run.replies[-1].startswith("250"), f"beta did not take the copy: {run.replies}"
    assert len(run.boxes[BETA_USER]) == len(before.boxes[BETA_USER]) + 1, "the copy reached no mailbox"
    new = run.boxes[BETA_USER][-1]
    receipts = [s for s in run.outbox("beta")[len(before.outbox("beta")):] if s.kind in map(str, CONSEGNE)]
    if new == injected or receipts:
        unsigned = parsed(injected).signed is None
        obs.add("FAIL", "RIC-14", *(("RIC-04",) if unsigned else ()))
        obs.note = (f"{'unsigned' if unsigned else 'forged'} copy delivered "
                    f"{'as it came' if new == injected else 'wrapped'}, {len(receipts)} consegna sent back")
    else:
        assert parsed(new).kind is Kind.BUSTA_ANOMALIA
    return obs


def p_receipt_for_anomaly(run: Run) -> Observation:
    """A validly signed but malformed envelope (postacert.eml removed, re-signed with alfa's key)."""
    obs = Observation()
    before = run.extra["before"]
    assert len(before.outbox("beta", Kind.CONSEGNA_COMPLETA)) == 1
    assert len(run.box(BETA_USER, Kind.BUSTA_ANOMALIA)) == 1, "the malformed envelope was not an anomaly (ANO-14)"
    new = run.outbox("beta")[len(before.outbox("beta")):]
    receipts = [s for s in new if s.kind in map(str, CONSEGNE)]
    if receipts:
        obs.add("FAIL", "ANO-13", "CON-03")
        obs.note = f"{len(receipts)} consegna ({receipts[0].kind}) sent back for an anomaly envelope"
    return obs


# ---- timers (FAST_TIMERS: preavviso at 2 s, 24 h notice at 3.5 s in [3 s, 4 s], from acceptance)


def _timeouts(run: Run, kind: Kind, recipient: str):
    return [s for s in run.outbox("alfa", kind) if consegna_of(s.data) == recipient]


def _dispatched(run: Run, sent) -> float:
    return run.transactions[sent.parsed.daticert.identificativo]


def p_no_preavviso(run: Run) -> Observation:
    obs = Observation()
    assert _timeouts(run, Kind.MANCATA_CONSEGNA_24H, SILENT_USER), "no 24 h notice either"
    if not _timeouts(run, Kind.PREAVVISO_12H, SILENT_USER) and not run.box(ALFA_USER, Kind.PREAVVISO_12H):
        obs.add("FAIL", "TMO-02")
        obs.note = "nothing came back from the silent provider, 24 h notice sent, no 12 h notice"
    return obs


def p_24h_twice(run: Run) -> Observation:
    obs = Observation()
    notices = _timeouts(run, Kind.MANCATA_CONSEGNA_24H, SILENT_USER)
    in_box = [m for m in run.box(ALFA_USER, Kind.MANCATA_CONSEGNA_24H) if consegna_of(m) == SILENT_USER]
    assert notices and in_box, "no 24 h notice"
    if len(notices) > 1 or len(in_box) > 1:
        obs.add("FAIL", "TMO-03", "TMO-08")
        obs.note = f"{len(in_box)} 24 h notices for one recipient in mario's mailbox"
    return obs


def p_24h_early(run: Run) -> Observation:
    obs = Observation()
    notices = _timeouts(run, Kind.MANCATA_CONSEGNA_24H, SILENT_USER)
    assert notices, "no 24 h notice"
    window = FAST_TIMERS["window_start"]
    for s in notices:
        dispatched = _dispatched(run, s)
        # the timer starts at acceptance: dispatched_at is the accettazione's Date, to the second
        accettazione = [parsed(m) for m in run.box(ALFA_USER, Kind.ACCETTAZIONE)
                        if parsed(m).daticert.identificativo == s.parsed.daticert.identificativo]
        assert accettazione
        accepted = parsedate_to_datetime(accettazione[0].header("Date")).timestamp()
        assert abs(accepted - dispatched) < 1.0, (accepted, dispatched)
        elapsed = s.sent_at - accepted  # delivered into mario's mailbox before being marked sent
        obs.note = (f"24 h notice issued {s.created - accepted:.2f} s, delivered {elapsed:.2f} s after the "
                    f"accettazione (window from {window} s)")
        if elapsed < window or s.created - accepted < window:
            obs.add("FAIL", "TMO-03")
    return obs


def p_preavviso_despite_consegna(run: Run) -> Observation:
    obs = Observation()
    row = [r for r in run.tracking if r["recipient"] == BETA_USER]
    assert row and row[0]["consegna_at"] is not None, "no consegna from anna"
    in_time = row[0]["consegna_at"] - row[0]["dispatched_at"]
    assert in_time < FAST_TIMERS["preavviso"], f"consegna after {in_time:.2f} s: not in time"
    notices = _timeouts(run, Kind.PREAVVISO_12H, BETA_USER)
    if notices:
        obs.add("FAIL", "TMO-07")
        obs.note = f"consegna {in_time:.2f} s after acceptance, 12 h notice for anna all the same"
    return obs


def p_timeout_to_recipient(run: Run) -> Observation:
    obs = Observation()
    notices = [s for k in TIMEOUTS for s in _timeouts(run, k, SILENT_USER)]
    assert notices, "no timeout notice"
    misrouted = [s for s in notices if s.rcpts != [ALFA_USER]]
    if misrouted:
        at_silent = [m for _, _, m in run.silent if parsed(m).kind in TIMEOUTS]
        obs.add("FAIL", "TMO-09", "GEN-01")
        obs.note = (f"timeout notices sent to {sorted({r for s in misrouted for r in s.rcpts})}; "
                    f"{len(at_silent)} reached the silent provider, "
                    f"{len([k for k in kinds_in(run.boxes[ALFA_USER]) if k in TIMEOUTS])} reached mario")
    # the notices' own To header, judged by the validator
    for kind in TIMEOUTS:
        obs.merge(judged([s.data for s in _timeouts(run, kind, SILENT_USER)], run, kind, "alfa", None))
    return obs


# ---------------------------------------------------------------------------------------------- scenario table


@dataclass(frozen=True)
class Scenario:
    flow: str
    probe: Callable[[Run], Observation]


FLOWS: dict[str, Callable[..., Run]] = {f.__name__: f for f in (
    fh.completa, fh.breve, fh.bcc, fh.hidden_recipient, fh.sender_mismatch, fh.virus_submission,
    fh.unknown_mailbox, fh.sha1_envelope, fh.virus_envelope, fh.anomaly, fh.unsigned_copy,
    fh.malformed_signed, fh.timers, fh.published_index)}


def _carried(run: Run) -> bytes:
    return envelope_original(run)


ACC = emitted(Kind.ACCETTAZIONE, "alfa")
ENV = emitted(Kind.BUSTA_TRASPORTO, "alfa")
NACC = emitted(Kind.NON_ACCETTAZIONE, "alfa")
NACCV = emitted(Kind.NON_ACCETTAZIONE_VIRUS, "alfa")
PRESA = emitted(Kind.PRESA_IN_CARICO, "beta")
COMPLETA = emitted(Kind.CONSEGNA_COMPLETA, "beta", carried=_carried)
MANCATA = emitted(Kind.MANCATA_CONSEGNA, "beta")
ANOMALIA = emitted(Kind.BUSTA_ANOMALIA, BETA_USER)

def p_published_index(run: Run) -> Observation:
    """The published index judged as the suite's index.published scenario judges it."""
    from datetime import UTC, datetime

    from conformance.checks.published_index import judge_published_index
    from conformance.pec.pki import load_pki_directory

    layout = load_pki_directory(run.extra["pki"])
    cred = layout.provider(run.extra["provider"])
    obs = Observation()
    for f in judge_published_index(run.extra["published"], provider_name=cred.provider_name,
                                   domains=list(cred.domains), service_address=cred.service_address,
                                   signer=layout.index_signer_certificate, signing_certificate=cred.certificate,
                                   now=datetime.now(UTC)):
        obs.add(str(f.verdict), *f.requirements)
        if f.verdict in (Verdict.FAIL, Verdict.ERROR):
            obs.failures.append(f"{','.join(f.requirements)}: {f.message}")
    return obs


SCENARIOS: dict[str, Scenario] = {
    # access point
    "acc-no-accettazione": Scenario("completa", p_no_accettazione),
    "acc-subject-prefix": Scenario("completa", ACC),
    "acc-unsigned": Scenario("completa", ACC),
    "acc-wrong-zona": Scenario("completa", ACC),
    "acc-no-riferimento": Scenario("completa", ACC),
    "acc-all-certificato": Scenario("completa", ACC),
    "acc-to-other": Scenario("completa", ACC),
    "acc-bcc-accepted": Scenario("bcc", p_formal_check_skipped(("ACC-08", "ACC-09"), "Bcc")),
    "acc-sender-mismatch-accepted": Scenario("sender_mismatch", p_sender_mismatch),
    "acc-hidden-recipient-accepted": Scenario("hidden_recipient", p_formal_check_skipped(
        ("ACC-07", "ACC-09"), "RCPT TO beyond To/Cc")),
    "acc-virus-not-detected": Scenario("virus_submission", p_virus_not_detected),
    "nacc-subject-prefix": Scenario("bcc", NACC),
    "nacc-includes-original": Scenario("bcc", NACC),
    "naccv-no-verifica-flag": Scenario("virus_submission", NACCV),
    "naccv-errore-altro": Scenario("virus_submission", NACCV),
    # transport envelope
    "env-subject-prefix": Scenario("completa", ENV),
    "env-from-author": Scenario("completa", ENV),
    "env-unquoted-display-name": Scenario("completa", ENV),
    "env-no-tipo-ricevuta": Scenario("completa", ENV),
    "env-client-msgid-kept": Scenario("completa", ENV),
    "env-sha1": Scenario("completa", ENV),
    "env-no-daticert": Scenario("completa", ENV),
    "env-wrong-tipo": Scenario("completa", ENV),
    "env-altered-original": Scenario("completa", emitted(Kind.BUSTA_TRASPORTO, "alfa", carried=submitted_rewritten)),
    "env-key-outside-index": Scenario("completa", p_key_outside_index),
    # incoming point
    "inc-no-presa-in-carico": Scenario("completa", p_no_presa),
    "inc-presa-to-user": Scenario("completa", p_presa_to_user),
    "inc-presa-subject-prefix": Scenario("completa", PRESA),
    "inc-presa-no-ricezione": Scenario("completa", PRESA),
    "inc-unverified-as-pec": Scenario("unsigned_copy", p_unverified_as_pec),
    "inc-anomaly-with-daticert": Scenario("anomaly", ANOMALIA),
    "inc-anomaly-subject-prefix": Scenario("anomaly", ANOMALIA),
    "inc-virus-forwarded": Scenario("virus_envelope", p_virus_forwarded),
    "inc-no-rilevazione-virus": Scenario("virus_envelope", p_no_rilevazione),
    "inc-rilevazione-no-mittente": Scenario("virus_envelope", emitted(Kind.RILEVAZIONE_VIRUS, "beta")),
    "inc-rilevazione-to-user": Scenario("virus_envelope", p_rilevazione_to_user),
    "inc-sha1-refused": Scenario("sha1_envelope", p_sha1_refused),
    # delivery point
    "dlv-no-consegna": Scenario("completa", p_no_consegna),
    "dlv-lose-one-in-ten": Scenario("completa", p_no_consegna),  # the first receipt is the one lost
    "dlv-consegna-subject-prefix": Scenario("completa", COMPLETA),
    "dlv-cc-gets-completa": Scenario("completa", p_cc_gets_completa),
    "dlv-wrong-brief-hash": Scenario("breve", emitted(Kind.CONSEGNA_BREVE, "beta", carried=_carried)),
    "dlv-completa-no-original": Scenario("completa", COMPLETA),
    "dlv-consegna-no-consegna-element": Scenario("completa", COMPLETA),
    "dlv-receipt-for-anomaly": Scenario("malformed_signed", p_receipt_for_anomaly),
    "dlv-mancata-errore-nessuno": Scenario("unknown_mailbox", MANCATA),
    "dlv-mancata-no-code": Scenario("unknown_mailbox", MANCATA),
    "dlv-no-mancata-consegna": Scenario("unknown_mailbox", p_no_mancata),
    # sender-side tracking
    "trk-no-preavviso": Scenario("timers", p_no_preavviso),
    "trk-24h-twice": Scenario("timers", p_24h_twice),
    "trk-24h-early": Scenario("timers", p_24h_early),
    "trk-preavviso-despite-consegna": Scenario("timers", p_preavviso_despite_consegna),
    "trk-timeout-to-recipient": Scenario("timers", p_timeout_to_recipient),
    "trk-24h-no-code": Scenario("timers", emitted(Kind.MANCATA_CONSEGNA_24H, "alfa")),
    "trk-no-virus-notice": Scenario("virus_envelope", p_no_virus_notice),
    "trk-virus-notice-no-flag": Scenario("virus_envelope", emitted(Kind.MANCATA_CONSEGNA_VIRUS, "alfa")),
    # the published index
    **{name: Scenario("published_index", p_published_index) for name in (
        "idx-dn-outside-postacert", "idx-no-provider-name", "idx-no-main-record", "idx-unsigned",
        "idx-wrong-certificate-hash", "idx-receipt-in-brackets", "idx-service-domain-unlisted", "idx-renewal-gap")},
}

# Faults whose deviation the suite does not (yet) show; each reason names the library code at fault.
KNOWN_GAPS: dict[str, str] = {}  # fault -> library bug; empty: every fault is proven


def placement(fault: Fault | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if fault is None:
        return (), ()
    return ((fault.name,), ()) if SIDES[fault.point] == "alfa" else ((), (fault.name,))


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def timer_runs(tmp_path_factory) -> dict[str | None, Run]:
    """The timer flow for every timer scenario and once without faults, all deployments side by side so
    the seconds of FAST_TIMERS are waited once."""
    names = [None, *sorted(n for n, s in SCENARIOS.items() if s.flow == "timers")]
    started: dict[str | None, tuple] = {}
    runs: dict[str | None, Run] = {}
    try:
        for name in names:
            alfa, beta = placement(CATALOGUE[name] if name else None)
            started[name] = (fh.timers_start(tmp_path_factory.mktemp(f"timers-{name or 'control'}"), alfa, beta),
                             alfa, beta)
        end = max(s[0][2] for s in started.values()) + FAST_TIMERS["timeout"] + 1.0
        for name in names:
            s, alfa, beta = started.pop(name)
            runs[name] = fh.timers_finish(s, alfa, beta, wait_until=end)
    finally:
        for s, _, _ in started.values():
            s[0].stop()
    return runs


def run_flow(flow: str, fault: Fault | None, tmp_path, request) -> Run:
    if flow == "timers":
        return request.getfixturevalue("timer_runs")[fault.name if fault else None]
    alfa, beta = placement(fault)
    return FLOWS[flow](tmp_path, alfa, beta)


# ---------------------------------------------------------------------------------------------- tests


def test_catalogue_is_complete_and_covered():
    catalogue = load_catalogue()
    assert len(FAULTS) >= 40
    assert len(CATALOGUE) == len(FAULTS), "duplicate fault names"
    for f in FAULTS:
        assert f.description.strip(), f.name
        assert f.requirements, f.name
        unknown = [r for r in f.requirements if r not in catalogue]
        assert not unknown, f"{f.name}: unknown requirement IDs {unknown}"
        assert f.verdict in ("FAIL", "WARN"), f.name
        assert f.point in SIDES, f.name
        assert f.flow == (not f.kinds), f"{f.name}: a message fault names the kinds it alters, a flow fault none"
    # Faults without a probe here are proven by the per-requirement kill matrix (bench/kill_matrix.py,
    # sampled by tests/test_kill_matrix.py); every scenario in this table is for a fault that exists.
    assert not set(SCENARIOS) - set(CATALOGUE), "scenarios for faults that do not exist"
    assert set(KNOWN_GAPS) <= set(CATALOGUE)
    for name, sc in SCENARIOS.items():
        assert sc.flow in FLOWS, name
        single = getattr(sc.probe, "single", None)
        fault = CATALOGUE[name]
        if single is not None:  # the validator judges the very kind the fault alters
            assert single in fault.kinds, f"{name}: probe judges {single}, fault alters {fault.kinds}"


def _fault_params():
    """The faults with a unit probe here; the others are proven by the per-requirement kill matrix."""
    for f in FAULTS:
        if f.name not in SCENARIOS:
            continue
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_GAPS[f.name])] if f.name in KNOWN_GAPS else []
        yield pytest.param(f.name, marks=marks, id=f.name)


@pytest.mark.parametrize("name", list(_fault_params()))
def test_fault_is_observed(name, tmp_path, request):
    fault = CATALOGUE[name]
    scenario = SCENARIOS[name]
    started = time.monotonic()
    run = run_flow(scenario.flow, fault, tmp_path, request)
    observation = scenario.probe(run)
    wanted = {r: fault.verdict for r in fault.requirements}
    seen = {r: sorted(v) for r, v in observation.verdicts.items() if r in wanted}
    print(f"{name}: {scenario.flow}; observed {seen}; {observation.note}")
    assert observation.shows(fault), (
        f"{name} ({scenario.flow}, {time.monotonic() - started:.1f} s): expected {wanted}, observed {seen}; "
        f"{observation.note}; findings: {observation.failures}")


@pytest.mark.parametrize("on", [False, True], ids=["control", "fault"])
def test_inc_unverified_as_pec_forged_signature(on, tmp_path):
    """The other half of inc-unverified-as-pec: an envelope whose signature no longer verifies (RIC-06)
    is delivered as PEC and acknowledged with a consegna when the fault is on, an anomaly otherwise."""
    fault = CATALOGUE["inc-unverified-as-pec"]
    run = fh.forged_copy(tmp_path, (), (fault.name,) if on else ())
    assert not parsed(run.extra["injected"]).signature.verification.ok
    observation = p_unverified_as_pec(run)
    assert observation.shows(fault) is on, (observation.verdicts, observation.note)


@pytest.mark.parametrize("flow", sorted({s.flow for s in SCENARIOS.values()}))
def test_flow_without_faults_is_clean(flow, tmp_path, request):
    """The control: the same flow, no fault: no probe sees a deviation and no judged message has a FAIL."""
    run = run_flow(flow, None, tmp_path, request)
    assert not any(run.errors.values()), run.errors
    for name, scenario in SCENARIOS.items():
        if scenario.flow != flow:
            continue
        fault = CATALOGUE[name]
        observation = scenario.probe(run)
        assert not observation.failures, (name, observation.failures)
        assert not observation.shows(fault), (name, observation.verdicts, observation.note)

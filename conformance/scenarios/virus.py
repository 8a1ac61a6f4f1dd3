"""Viruses (VIR-02..14, MUL-06, NOT-05, GEN-07/08; decisions D21, D24): the access point refuses an
infected submission with a notice; an infected envelope from the counterpart is taken in charge, not
delivered, and reported with one rilevazione virus per recipient to the counterpart's mailReceipt; a
rilevazione from the counterpart becomes the sender's avviso di mancata consegna per virus; infected
ordinary mail never reaches a user as it was. The test file is EICAR."""

from __future__ import annotations

import time

from ..counterpart import forge
from ..engine.core import Blocked, Captured, HarnessError, ScenarioContext, scenario
from ..pec.constants import H_MITTENTE, H_VERIFICA_SICUREZZA, VERIFICA_SICUREZZA_ERRORE, Kind
from ..pec.mime import contains
from ..pec.samples import EICAR
from .acceptance import no_leak

CONSEGNE = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)


def _address(ctx: ScenarioContext, label: str) -> str:
    """A counterpart mailbox unique to this scenario, so its behaviour touches no other scenario."""
    return f"{label}-{ctx.token}@{ctx.peer(0).rpartition('@')[2]}"


def _wait_any(ctx: ScenarioContext, index: int, kinds: tuple[Kind, ...], within: float) -> list[Captured]:
    """WAITING for a message of any of `kinds` (a virus notice without its flag parses as the plain kind)."""
    end = ctx.deadline(within)
    while True:
        found = ctx.mailbox(index, kinds)
        if found or time.monotonic() >= end:
            return found
        ctx.pause(0.1)


def _carries_eicar(raw: bytes) -> bool:
    """The test signature in the bytes or in any decoded part, attached messages included."""
    return contains(raw, EICAR, max_depth=4)


def _flag(ctx: ScenarioContext, req: str, cap: Captured) -> None:
    value = cap.message.header(H_VERIFICA_SICUREZZA)
    ctx.verdict(req, value == VERIFICA_SICUREZZA_ERRORE, "the notice carries X-VerificaSicurezza: errore",
                expected=VERIFICA_SICUREZZA_ERRORE, actual=value or "missing", evidence=cap.evidence)


@scenario("virus.at-access-point", "An infected submission",
          "A user attaches the EICAR test file; the same message with a clean attachment is accepted, this one "
          "is refused with an avviso di non accettazione per virus (X-VerificaSicurezza: errore, errore=virus) "
          "and no envelope leaves.",
          ["VIR-02", "VIR-03", "FMT-09"])
def at_access_point(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "virus")
    ctx.world.counterpart.set_behaviour("silent", recipients=[rcpt])
    clean = b"Documento di prova senza contenuti attivi.\r\n"
    ctl = ctx.control(ctx.original(rcpt, attachment=clean, subject="Allegato infetto"), [rcpt])
    out = ctx.submit(ctx.original(rcpt, attachment=EICAR, subject="Allegato infetto"), [rcpt])
    verdict = ctx.judge_refusal("VIR-02", out, ctl, notice_kind=[Kind.NON_ACCETTAZIONE_VIRUS, Kind.NON_ACCETTAZIONE],
                                cause="virus", what="infected attachment", within=10)
    if verdict == "BLOCKED":
        ctx.blocked(("VIR-03", "FMT-09"), "the refusal of the infected message could not be judged")
        return
    if not out.accepted:
        ctx.verdict("VIR-03", False, "refused at SMTP level: the sender gets no avviso di non accettazione per virus",
                    expected="avviso di non accettazione per virus", actual=str(out))
    else:
        notices = [c for c in ctx.mailbox(0, [Kind.NON_ACCETTAZIONE_VIRUS, Kind.NON_ACCETTAZIONE])
                   if ctl.subject_marker not in c.message.subject]
        ctx.verdict("VIR-03", len(notices) == 1, "one avviso di non accettazione per virus reaches the sender",
                    expected="1", actual=str(len(notices)))
        if notices:
            _flag(ctx, "VIR-03", notices[0])
            d = notices[0].message.daticert
            ctx.verdict(("VIR-03", "FMT-09"), d is not None and d.errore == "virus", "daticert says errore=virus",
                        expected="virus", actual=d.errore if d else "no daticert")
    no_leak(ctx, ctl, "infected attachment", "VIR-02")


@scenario("virus.reported-by-counterpart", "The recipient's provider finds a virus",
          "A user sends to a counterpart mailbox; the counterpart takes the envelope in charge and reports a "
          "virus to the target's mailReceipt; the target sends its user an avviso di mancata consegna per virus "
          "and never shows the rilevazione virus or the presa in carico.",
          ["VIR-10", "NOT-05", "GEN-07", "GEN-08"])
def reported_by_counterpart(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "virus")
    cp = ctx.world.counterpart
    cp.set_behaviour("virus-found", recipients=[rcpt])
    out = ctx.submit(ctx.original(rcpt, tipo="sintetica"), [rcpt])
    if not out.accepted:  # a correct submission refused is ACC-17's failure, judged in acceptance.single
        raise Blocked(None, f"the submission was not accepted ({out})")
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO, within=10)
    if not envelopes or envelopes[0].message.daticert is None:
        ctx.verdict("ACC-17", False, "an accepted message produces a transport envelope", expected="1 envelope",
                    actual=f"{len(envelopes)} readable envelope(s) at the counterpart")
        raise Blocked(None, "no transport envelope reached the counterpart: nothing to report a virus for")
    notices = _wait_any(ctx, 0, (Kind.MANCATA_CONSEGNA_VIRUS, Kind.MANCATA_CONSEGNA), within=10)
    ident = envelopes[0].message.daticert.identificativo
    sent = cp.sent_matching(lambda s: s.kind == str(Kind.RILEVAZIONE_VIRUS) and s.related == ident)
    if not sent:
        raise HarnessError("the counterpart sent no rilevazione virus")
    ctx.verdict("GEN-08", sent[0].outcome.ok, "the target's mailReceipt accepts the rilevazione virus",
                expected="250", actual=f"{sent[0].outcome.code} {sent[0].outcome.text}")
    if not sent[0].outcome.ok:
        raise Blocked(None, f"the target refused the counterpart's rilevazione virus ({sent[0].outcome.code})")
    ctx.verdict("VIR-10", len(notices) == 1, "one avviso di mancata consegna per virus reaches the sender",
                expected="1", actual=str(len(notices)))
    if notices:
        _flag(ctx, "VIR-10", notices[0])
        d = notices[0].message.daticert
        ctx.verdict("VIR-10", d is not None and d.errore == "virus" and (d.consegna or "").lower() == rcpt,
                    "daticert says errore=virus and names the recipient", expected=f"virus, {rcpt}",
                    actual=f"{d.errore}, {d.consegna}" if d else "no daticert")
        ctx.verdict("NOT-05", bool(d and d.errore_esteso and d.errore_esteso[:1].isdigit()),
                    "errore-esteso carries a code and names the virus problem", soft=True, decision="D18",
                    expected="<x.y.z> - <gestore> - <descrizione>", actual=d.errore_esteso if d else None)
    shown = ctx.quiet_mailbox(0, Kind.RILEVAZIONE_VIRUS, during=0.5)
    ctx.verdict("GEN-08", not shown, "the rilevazione virus never reaches the user", expected="none",
                actual=f"{len(shown)} rilevazione virus")
    presa = ctx.mailbox(0, [Kind.PRESA_IN_CARICO])
    taken = cp.sent_matching(lambda s: s.kind == str(Kind.PRESA_IN_CARICO) and s.related == ident and s.outcome.ok)
    if presa or taken:
        ctx.verdict("GEN-07", not presa, "no presa in carico in the sender's mailbox", expected="none",
                    actual=f"{len(presa)} presa in carico")


CONTROL = "[controllo]"


def _clean_envelope_delivered(ctx: ScenarioContext, users: list[str], index: int) -> bool:
    """A positive control: the same envelope without the virus reaches the recipient's mailbox."""
    original = ctx.original(users, sender=ctx.peer(0), subject=f"Busta pulita {CONTROL}")
    raw, t = forge.envelope(ctx.world.counterpart_credentials, original)
    code = ctx.inject(raw, users, mail_from=t.mittente, label="envelope-clean")
    got = ctx.wait_mailbox(index, Kind.BUSTA_TRASPORTO, within=15,
                           where=lambda c: CONTROL in c.message.subject) if 200 <= code < 300 else []
    if not got:
        ctx.blocked(("VIR-05", "VIR-06", "CON-02"), f"the same envelope without the virus was not delivered "
                    f"(SMTP {code}, {len(got)} in {ctx.user(index)}'s mailbox)")
    return bool(got)


def _not_control(cap) -> bool:
    message = getattr(cap, "message", None)
    return CONTROL not in (message.subject if message is not None else "")


@scenario("virus.envelope-into-target", "An infected envelope from the counterpart",
          "The counterpart sends two target users a correct envelope carrying EICAR (the same envelope without "
          "it is delivered); the target delivers nothing, takes the envelope in charge (decision D24) and sends "
          "one rilevazione virus per recipient, with X-Mittente, to the counterpart's mailReceipt (decision D21).",
          ["VIR-05", "VIR-06", "VIR-07", "VIR-08", "MUL-06", "CON-02", "GEN-07"])
def envelope_into_target(ctx: ScenarioContext) -> None:
    users = [ctx.user(1), ctx.user(2)]
    cp = ctx.world.counterpart
    controlled = _clean_envelope_delivered(ctx, users, 1)
    original = ctx.original(users, sender=ctx.peer(0), subject="Busta con virus")
    raw, t = forge.with_eicar(ctx.world.counterpart_credentials, original)
    code = ctx.inject(raw, users, mail_from=t.mittente, label="envelope-eicar")
    if not 200 <= code < 300:
        ctx.info("VIR-06", f"the incoming point answered {code} to a correct (if infected) envelope")
    found = ctx.wait_counterpart(Kind.RILEVAZIONE_VIRUS, count=len(users), within=10)
    named = sorted((c.message.daticert.consegna or "").lower() for c in found if c.message.daticert)
    ctx.verdict(("VIR-07", "VIR-08", "MUL-06"), named == sorted(users),
                "one rilevazione virus per recipient reaches the counterpart", expected=", ".join(sorted(users)),
                actual=", ".join(named) or "none")
    recs = ctx.counterpart_got(Kind.RILEVAZIONE_VIRUS)
    elsewhere = sorted({r.lower() for rec in recs for r in rec.rcpts} - {cp.receipt_mailbox.lower()})
    if recs:
        ctx.verdict(("VIR-07", "GEN-01"), not elsewhere, "every rilevazione virus goes to the counterpart's mailReceipt",
                    decision="D21", expected=cp.receipt_mailbox, actual=", ".join(elsewhere) or cp.receipt_mailbox)
    for cap in found:
        value = cap.message.header(H_MITTENTE) or ""
        ctx.verdict("VIR-07", t.mittente in value.lower(), "X-Mittente names the original sender",
                    expected=t.mittente, actual=value or "missing", evidence=cap.evidence)
    presa = [c for c in ctx.wait_counterpart(Kind.PRESA_IN_CARICO, count=2 if controlled else 1, within=2)
             if _not_control(c)]
    ctx.verdict("VIR-06", bool(presa), "a presa in carico for the infected envelope", soft=True, decision="D24",
                expected="presa in carico", actual=f"{len(presa)} presa in carico")
    ctx.quiet_mailbox(1, Kind.BUSTA_TRASPORTO, during=1.0)
    arrived = [c for c in ctx.mailbox(1) + ctx.mailbox(2) if _not_control(c)]
    carried = [c for c in arrived if c.message.kind in (Kind.BUSTA_TRASPORTO, Kind.BUSTA_ANOMALIA)
               or _carries_eicar(c.raw)]
    receipts = [r for r in ctx.counterpart_got() if r.message.kind in CONSEGNE and _not_control(r)]
    if controlled:
        ctx.verdict("VIR-05", not carried, "the infected envelope reaches no recipient mailbox", expected="nothing",
                    actual=", ".join(str(c.message.kind) for c in carried) or "nothing")
        ctx.verdict(("VIR-05", "CON-02"), not receipts, "no delivery receipt for the infected envelope",
                    expected="none", actual=f"{len(receipts)} receipt(s)")
    shown = [c for c in ctx.mailbox(1) + ctx.mailbox(2) if c.message.kind is Kind.PRESA_IN_CARICO]
    if shown or presa:  # the target made a presa in carico: where it went counts
        ctx.verdict("GEN-07", not shown, "no presa in carico in a recipient's mailbox", expected="none",
                    actual=f"{len(shown)} presa in carico")
    else:
        ctx.blocked("GEN-07", "the target made no presa in carico for the infected envelope")


@scenario("virus.ordinary-mail", "Infected ordinary mail",
          "An ordinary (non-PEC) sender mails a target user the EICAR test file; the same mail without it "
          "reaches the user (as the declared ordinary-mail policy says), this one never reaches the user as it "
          "was: refused or discarded (VIR-14), or at most delivered without the virus, and no PEC notice.",
          ["VIR-13", "VIR-14"], needs=("ordinary_mail",))
def ordinary_mail(ctx: ScenarioContext) -> None:
    outsider = ctx.outsider(0)
    if ctx.world.profile.capability("ordinary_mail") == "refuse":
        ctx.info(("VIR-13", "VIR-14"), "not applicable: the target declares it refuses ordinary mail")
        return
    clean = forge.original(outsider, ctx.user(0), subject=f"[{ctx.token}] Posta ordinaria {CONTROL}",
                           tipo_ricevuta=None, attachment=b"Documento di prova.\r\n", attachment_name="nota.txt",
                           attachment_type="text/plain")
    code = ctx.inject(clean, [ctx.user(0)], mail_from=outsider, origin="ordinary", starttls=False,
                      label="ordinary-clean")
    got = ctx.wait_mailbox(0, Kind.BUSTA_ANOMALIA, within=15, where=lambda c: CONTROL in c.message.subject) \
        if 200 <= code < 300 else []
    if not got:
        raise Blocked(None, f"the same ordinary mail without the virus did not reach the user (SMTP {code})")
    raw = forge.original(outsider, ctx.user(0), subject=f"[{ctx.token}] Posta ordinaria con virus",
                         tipo_ricevuta=None, attachment=EICAR, attachment_name="eicar.com",
                         attachment_type="application/octet-stream")
    # Plain SMTP, as most Internet mail arrives (and the built-in ordinary domain does not trust the test CA).
    code = ctx.inject(raw, [ctx.user(0)], mail_from=outsider, origin="ordinary", starttls=False,
                      label="ordinary-eicar")
    ctx.quiet_mailbox(0, Kind.BUSTA_ANOMALIA, during=1.5)
    arrived = [c for c in ctx.mailbox(0) if _not_control(c)]
    infected = [c for c in arrived if _carries_eicar(c.raw)]
    ctx.verdict("VIR-13", not infected, "the infected ordinary mail does not reach the user as it was",
                expected="refused, discarded or cleaned (the clean one was delivered)",
                actual=", ".join(str(c.message.kind) for c in infected) or f"SMTP {code}, {len(arrived)} delivered")
    how = "refused at SMTP level" if code >= 500 else f"accepted ({code}), {len(arrived)} message(s) delivered"
    notices = [c for c in ctx.wait_ordinary(count=0, within=0) if c.message.kind not in (Kind.ORDINARY, Kind.UNKNOWN)]
    # VIR-14 allows discarding it like any Internet mail; what it rules out is a PEC notice to the outsider.
    ctx.verdict("VIR-14", not notices, f"infected ordinary mail handled as Internet mail ({how}), no PEC notice",
                expected="no PEC notice to the ordinary sender",
                actual=", ".join(str(c.message.kind) for c in notices) or "none")

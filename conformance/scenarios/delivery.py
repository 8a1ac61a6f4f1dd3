"""Delivery receipts for messages the target's users send (ENV-16, RIC-13, MUL-04, CON-04): the
counterpart takes the envelope in charge and answers with receipts in the variant the envelope asks for;
the target hands every receipt to its user unchanged. The variants a provider
chooses are judged where the target is the recipient's provider (inbound.*) or both (delivery.same-provider)."""

from __future__ import annotations

import time

from ..engine.core import Blocked, ScenarioContext, scenario
from ..pec.constants import Kind
from ..pec.parse import parse_message
from .incoming import store_grace, strip_trace

CONSEGNE = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)
_VARIANT = {"completa": Kind.CONSEGNA_COMPLETA, "breve": Kind.CONSEGNA_BREVE, "sintetica": Kind.CONSEGNA_SINTETICA}


def _receipts(ctx: ScenarioContext, tipo: str, to: list[str], cc: list[str]) -> None:
    """The counterpart makes the receipts (in the variant the envelope asks for); what is the target's is that
    its envelope asks for the variant the user asked, and that it hands every receipt to its user unchanged
    (quiet timers are judged in timeouts.two-recipients, beside a recipient whose notices do come). The variants themselves are judged where the target makes the receipts
    (inbound.*)."""
    ctx.world.counterpart.set_behaviour("normal", recipients=to + cc)
    raw = ctx.original(to, cc=cc or None, tipo=tipo, attachment=b"%PDF-1.4 allegato di prova\n" * 30)
    out = ctx.submit(raw, to + cc)
    if not out.accepted:  # a correct submission refused is ACC-17's failure, judged in acceptance.single
        raise Blocked(None, f"the submission was not accepted ({out})")
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO)
    if not envelopes or envelopes[0].message.daticert is None:
        ctx.verdict("ACC-17", False, "an accepted message produces a transport envelope", expected="1 envelope",
                    actual=f"{len(envelopes)} readable envelope(s) at the counterpart")
        raise Blocked(None, "no transport envelope reached the counterpart: no receipts to relay")
    d = envelopes[0].message.daticert
    ctx.verdict("ENV-16", d.ricevuta == tipo, "the envelope asks the recipient's provider for the variant the user "
                "asked", expected=f"ricevuta tipo={tipo}", actual=f"ricevuta tipo={d.ricevuta}")
    wanted = {r: (_VARIANT[tipo] if r in to else Kind.CONSEGNA_SINTETICA) for r in to + cc}
    found = []
    for kind in set(wanted.values()):
        n = sum(1 for k in wanted.values() if k is kind)
        found += ctx.wait_mailbox(0, kind, count=n, within=20)
    sent = {}
    for s in ctx.world.counterpart.sent_matching(lambda s: "consegna" in s.kind and s.related == d.identificativo):
        sd = parse_message(s.raw).daticert
        if s.outcome.ok and sd is not None:
            sent[(sd.consegna or "").lower()] = s.raw
    if not sent:
        raise Blocked(("RIC-13", "MUL-04", "CON-04"), "none of the counterpart's receipts got through")
    by_rcpt = {c.message.daticert.consegna.lower(): c for c in found if c.message.daticert and c.message.daticert.consegna}
    ctx.verdict(("RIC-13", "MUL-04"), set(by_rcpt) >= set(sent), "every receipt the counterpart sent reaches the "
                "user, one per recipient", expected=", ".join(sorted(sent)), actual=", ".join(sorted(by_rcpt)) or "none")
    for rcpt, cap in sorted(by_rcpt.items()):
        if rcpt in sent:
            same = strip_trace(cap.raw) == strip_trace(sent[rcpt])
            ctx.verdict("CON-04", same, f"the counterpart's receipt for {rcpt} is delivered unchanged",
                        expected="byte-identical bar trace fields", actual="identical" if same else "different",
                        evidence=cap.evidence)
        ctx.info("CON-06", f"the counterpart's {cap.message.kind} for {rcpt} (its own variant choice, relayed)",
                 evidence=cap.evidence)
    if not ctx.has_timers():  # watching for a 12 h notice means waiting 12 h on a deployment's own timers
        ctx.skip("TMO-07", "the target does not declare timers: its 12 h notice is not waited for")
        return


@scenario("delivery.completa", "Complete receipt",
          "A user sends to a counterpart mailbox (To) and another (Cc) asking for complete receipts; the envelope "
          "asks for them, and both of the counterpart's receipts reach the user unchanged.",
          ["ACC-17", "ENV-16", "RIC-13", "MUL-04", "CON-04"])
def completa(ctx: ScenarioContext) -> None:
    _receipts(ctx, "completa", [ctx.peer(0)], [ctx.peer(1)])


@scenario("delivery.breve", "Brief receipt",
          "A user asks for brief receipts (one To, one Cc recipient); the envelope asks for them, and the "
          "counterpart's receipts reach the user unchanged.",
          ["ACC-17", "ENV-16", "RIC-13", "MUL-04", "CON-04"])
def breve(ctx: ScenarioContext) -> None:
    _receipts(ctx, "breve", [ctx.peer(0)], [ctx.peer(1)])


@scenario("delivery.sintetica", "Concise receipts for everyone",
          "A user asks for concise receipts for two recipients; the envelope asks for them, and the "
          "counterpart's receipts reach the user unchanged.",
          ["ACC-17", "ENV-16", "RIC-13", "MUL-04", "CON-04"])
def sintetica(ctx: ScenarioContext) -> None:
    _receipts(ctx, "sintetica", [ctx.peer(0), ctx.peer(1)], [])


@scenario("delivery.same-provider", "Sender and recipient at the target",
          "A user sends to another user of the same provider asking for a concise receipt; full PEC processing: "
          "acceptance, the envelope in the recipient's mailbox, then (not before) a concise delivery receipt, "
          "no presa in carico in any user mailbox.",
          ["GEN-10", "GEN-07", "CON-02", "CON-17"])
def same_provider(ctx: ScenarioContext) -> None:
    out = ctx.submit(ctx.original(ctx.user(1), tipo="sintetica"), [ctx.user(1)])
    ctx.verdict("GEN-10", out.accepted, "submission accepted", actual=f"{out.code}")
    if not out.accepted:
        raise Blocked(None, f"the submission was not accepted ({out.code} {out.text[:80]})")
    # Both mailboxes watched together: when each message first shows (CON-02: the receipt not before the envelope).
    end, seen = ctx.deadline(20), {}
    while len(seen) < 2 and time.monotonic() < end:
        if "receipt" not in seen and ctx.mailbox(0, CONSEGNE):
            seen["receipt"] = time.monotonic()
        if "envelope" not in seen and ctx.mailbox(1, [Kind.BUSTA_TRASPORTO]):
            seen["envelope"] = time.monotonic()
        ctx.pause(0.05)
    envelope, receipts = ctx.mailbox(1, [Kind.BUSTA_TRASPORTO]), ctx.mailbox(0, CONSEGNE)
    ctx.verdict("GEN-10", len(envelope) == 1 and len(receipts) == 1, "the envelope is delivered in the "
                "recipient's mailbox and a delivery receipt reaches the sender",
                actual=f"{len(envelope)} envelope, {len(receipts)} receipt(s)")
    if receipts:
        lag = seen["envelope"] - seen["receipt"] if "envelope" in seen else None
        ctx.verdict("CON-02", lag is not None and lag <= store_grace(ctx),
                    "the receipt is issued once the envelope is stored", expected="the envelope, then the receipt",
                    actual="no envelope in the recipient's mailbox" if lag is None
                    else f"envelope seen {lag:+.2f} s after the receipt")
        d = receipts[0].message.daticert
        ctx.verdict("CON-17", receipts[0].message.kind is Kind.CONSEGNA_SINTETICA and d is not None
                    and d.ricevuta in (None, "sintetica"), "a concise receipt, as asked",
                    expected="consegna-sintetica, ricevuta tipo=sintetica",
                    actual=f"{receipts[0].message.kind}, ricevuta tipo={d.ricevuta if d else None}",
                    evidence=receipts[0].evidence)
    else:
        ctx.blocked(("CON-02", "CON-17"), "no delivery receipt reached the sender")
    presa = ctx.mailbox(0, [Kind.PRESA_IN_CARICO]) + ctx.mailbox(1, [Kind.PRESA_IN_CARICO])
    if presa or (envelope and receipts):  # the transaction ran: where its presa in carico went counts
        ctx.verdict("GEN-07", not presa, "no presa in carico in a user mailbox", decision="D22",
                    actual=f"{len(presa)} presa in carico")
    else:
        ctx.blocked("GEN-07", "the internal transaction did not run (no envelope or no receipt)")

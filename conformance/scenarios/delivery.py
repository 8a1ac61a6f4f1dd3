"""Delivery receipts for messages the target's users send (CON, MUL-04/05, RIC-09/11, GEN-07, TMO-07):
the counterpart takes the envelope in charge and delivers it; the target hands the receipts to its
user, one per recipient, in the variant asked for, and raises no timeout notice."""

from __future__ import annotations

from ..engine.core import ScenarioContext, scenario
from ..pec.constants import Kind

_VARIANT = {"completa": Kind.CONSEGNA_COMPLETA, "breve": Kind.CONSEGNA_BREVE, "sintetica": Kind.CONSEGNA_SINTETICA}


def _receipts(ctx: ScenarioContext, tipo: str, to: list[str], cc: list[str]) -> None:
    ctx.world.counterpart.set_behaviour("normal", recipients=to + cc)
    raw = ctx.original(to, cc=cc or None, tipo=tipo, attachment=b"%PDF-1.4 allegato di prova\n" * 30)
    out = ctx.submit(raw, to + cc)
    ctx.verdict("ACC-17", out.accepted, "submission accepted", actual=f"{out.code} {out.text}")
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO)
    carried = envelopes[0].message.postacert if envelopes else None
    wanted = {r: (_VARIANT[tipo] if r in to else Kind.CONSEGNA_SINTETICA) for r in to + cc}
    found = []
    for kind in set(wanted.values()):
        n = sum(1 for k in wanted.values() if k is kind)
        found += ctx.wait_mailbox(0, kind, count=n, within=20)
    by_rcpt = {c.message.daticert.consegna.lower(): c for c in found if c.message.daticert and c.message.daticert.consegna}
    ctx.verdict(("CON-06", "MUL-04"), set(by_rcpt) == set(wanted) and len(found) == len(wanted),
                "one delivery receipt per recipient", expected=", ".join(sorted(wanted)),
                actual=", ".join(sorted(by_rcpt)) or "none")
    for rcpt, kind in wanted.items():
        cap = by_rcpt.get(rcpt)
        req = ("CON-09", "MUL-05") if rcpt in cc else {"completa": ("CON-08",), "breve": ("CON-11",),
                                                       "sintetica": ("CON-17",)}[tipo]
        ctx.verdict(req, cap is not None and cap.message.kind is kind,
                    f"{rcpt} gets the {kind} receipt", expected=str(kind),
                    actual=str(cap.message.kind) if cap else "none")
        if cap is not None and carried is not None and kind in (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE):
            from ..checks.findings import ValidationContext
            from ..checks.validator import check

            v = ctx.world.validation
            result = check(cap.raw, ValidationContext(index=v.index, ca_certificates=v.ca_certificates, crls=v.crls,
                                                      expected_kind=kind, carried_original=carried))
            for f in result.findings:
                if f.check.startswith("receipts."):
                    f.evidence = cap.evidence  # type: ignore[attr-defined]
                    ctx.findings.append(f)
    late = ctx.quiet_mailbox(0, Kind.PREAVVISO_12H, during=ctx.timer("preavviso", 2.0) + 1.0)
    ctx.verdict("TMO-07", not late, "no timeout notice when the receipts came in time", actual=f"{len(late)} notice(s)")


@scenario("delivery.completa", "Complete receipt",
          "A user sends to a counterpart mailbox (To) and another (Cc) asking for complete receipts; the To "
          "recipient's receipt carries the original, the Cc one's is concise.",
          ["CON-06", "CON-08", "CON-09", "MUL-04", "MUL-05", "TMO-07", "CON-23"])
def completa(ctx: ScenarioContext) -> None:
    _receipts(ctx, "completa", [ctx.peer(0)], [ctx.peer(1)])


@scenario("delivery.breve", "Brief receipt",
          "A user asks for brief receipts; the To recipient's receipt carries the original with its "
          "attachments replaced by their SHA-1 hashes.", ["CON-11", "CON-12", "CON-13", "CON-06", "TMO-07"])
def breve(ctx: ScenarioContext) -> None:
    _receipts(ctx, "breve", [ctx.peer(0)], [])


@scenario("delivery.sintetica", "Concise receipts for everyone",
          "A user asks for concise receipts; every recipient's receipt has no original.",
          ["CON-17", "CON-06", "MUL-05", "TMO-07"])
def sintetica(ctx: ScenarioContext) -> None:
    _receipts(ctx, "sintetica", [ctx.peer(0), ctx.peer(1)], [])


@scenario("delivery.same-provider", "Sender and recipient at the target",
          "A user sends to another user of the same provider; full PEC processing: acceptance, the envelope "
          "in the recipient's mailbox, a delivery receipt, no presa in carico in any user mailbox.",
          ["GEN-10", "GEN-07", "CON-02", "CON-04"])
def same_provider(ctx: ScenarioContext) -> None:
    out = ctx.submit(ctx.original(ctx.user(1), tipo="sintetica"), [ctx.user(1)])
    ctx.verdict("GEN-10", out.accepted, "submission accepted", actual=f"{out.code}")
    envelope = ctx.wait_mailbox(1, Kind.BUSTA_TRASPORTO)
    ctx.verdict("GEN-10", len(envelope) == 1, "the envelope is delivered in the recipient's mailbox",
                actual=str(len(envelope)))
    receipts = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA)
    ctx.verdict(("GEN-10", "CON-02"), len(receipts) == 1, "a delivery receipt reaches the sender",
                actual=str(len(receipts)))
    presa = ctx.mailbox(0, [Kind.PRESA_IN_CARICO]) + ctx.mailbox(1, [Kind.PRESA_IN_CARICO])
    ctx.verdict("GEN-07", not presa, "no presa in carico in a user mailbox", decision="D22",
                actual=f"{len(presa)} presa in carico")

"""Formal checks at the access point (ACC-03..06, SIZ-03, IDX-09, ACC-18): each malformed submission is
refused with an avviso di non accettazione (an SMTP refusal is a WARN, decision D30), and nothing leaves."""

from __future__ import annotations

from ..engine.core import ScenarioContext, scenario
from ..pec.constants import Kind
from .acceptance import forged_sender, refused


def _without(raw: bytes, field: bytes) -> bytes:
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(field.lower() + b":")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@scenario("formal.no-to", "No To field",
          "A submission with only a Cc recipient and no To field is not accepted (a To with at least one "
          "address is required); the same message with its To field is.", ["ACC-05", "ACC-03", "ACC-09"])
def no_to(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0), cc=ctx.peer(1)), [ctx.peer(0), ctx.peer(1)])
    raw = _without(ctx.original(ctx.peer(0), cc=ctx.peer(1)), b"To")
    out = ctx.submit(raw, [ctx.peer(1)])
    refused(ctx, out, ctl, ("ACC-05", "ACC-03"), cause=("format", "recipient"), what="no To field")


@scenario("formal.two-from", "Two From addresses",
          "A From field naming two addresses is not accepted (one valid address is required); the same "
          "message with one From address is.", ["ACC-04", "ACC-03", "ACC-09"])
def two_from(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    raw = ctx.original(ctx.peer(0))
    raw = raw.replace(f"From: {ctx.user(0)}".encode(), f"From: {ctx.user(0)}, {ctx.user(1)}".encode(), 1)
    out = ctx.submit(raw, [ctx.peer(0)])
    refused(ctx, out, ctl, ("ACC-04", "ACC-03"), cause=("format", "sender"), what="two From addresses")


@scenario("formal.reverse-path", "Reverse path differs from From",
          "The SMTP MAIL FROM is the authenticated user but the From field names another mailbox of the "
          "target: refused (reverse path must equal From; decision D14 allows an SMTP refusal); the same "
          "message with From the user is accepted.", ["ACC-06", "ACC-19"])
def reverse_path(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    out = ctx.submit(ctx.original(ctx.peer(0), sender=ctx.user(1)), [ctx.peer(0)], mail_from=ctx.user(0))
    forged_sender(ctx, out, ctl, ("ACC-06", "ACC-19"), "From differs from the reverse path", leak="ACC-06")


@scenario("formal.beyond-further-bound", "Beyond the further size bound",
          "A message larger than the provider's further bound (declared max_message_size) is refused by SMTP, "
          "with no PEC notice; a small message of the same user is accepted.", ["SIZ-03", "SIZ-02"],
          needs=("max_message_size",))
def beyond_bound(ctx: ScenarioContext) -> None:
    bound = int(ctx.world.profile.capability("max_message_size"))
    ctx.info("SIZ-02", f"the declared further bound is {bound} bytes (the decree's floor is 30 MB of size x "
                       "recipients)", decision="D17")
    ctl = ctx.control(ctx.original(ctx.peer(0), tipo="sintetica"), [ctx.peer(0)])
    raw = ctx.original(ctx.peer(0), attachment=b"B" * (bound * 3 // 4 + 1024), tipo="sintetica")
    out = ctx.submit(raw, [ctx.peer(0)])
    verdict = ctx.judge_refusal("SIZ-03", out, ctl, notice_kind=None, cause="size", what="above the further bound")
    if verdict in ("PASS", "WARN"):
        notices = [c for c in ctx.quiet_mailbox(0, Kind.NON_ACCETTAZIONE, during=1.0)
                   if ctl.subject_marker not in c.message.subject]
        ctx.verdict("SIZ-03", not notices, "no PEC notice above the further bound",
                    actual=f"{len(notices)} notice(s)")


@scenario("formal.domain-case", "Recipient domain in upper case",
          "A recipient whose domain is written in upper case is still recognised as a PEC recipient "
          "(case-insensitive lookup in managedDomains).", ["IDX-09", "ACC-14"])
def domain_case(ctx: ScenarioContext) -> None:
    local, _, domain = ctx.peer(0).partition("@")
    shouted = f"{local}@{domain.upper()}"
    out = ctx.submit(ctx.original(shouted), [shouted])
    receipts = ctx.wait_mailbox(0, Kind.ACCETTAZIONE)
    tipo = None
    if receipts and receipts[0].message.daticert and receipts[0].message.daticert.destinatari:
        tipo = receipts[0].message.daticert.destinatari[0].tipo
    ctx.verdict(("IDX-09", "ACC-14"), out.accepted and tipo == "certificato",
                "an upper-case PEC domain is classified certificato", expected="certificato", actual=str(tipo),
                decision="D4")


@scenario("formal.tipo-ricevuta-carried", "The requested receipt type travels in the envelope",
          "A user asks for a brief receipt; the envelope carries X-TipoRicevuta: breve and ricevuta tipo=breve, "
          "and a message without the header gets completa.", ["ACC-18", "ENV-16", "ENV-10"])
def tipo_carried(ctx: ScenarioContext) -> None:
    rcpt = f"tipo-{ctx.token}@{ctx.peer(0).rpartition('@')[2]}"  # an address no other scenario uses
    ctx.submit(ctx.original(rcpt, tipo="breve", subject="breve"), [rcpt])
    ctx.submit(ctx.original(rcpt, tipo=None, subject="nessun tipo"), [rcpt])
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO, count=2)
    seen = {}
    for cap in envelopes:
        tag = "breve" if "breve" in cap.message.subject else "default"
        seen[tag] = (cap.message.header("X-TipoRicevuta"), cap.message.daticert.ricevuta if cap.message.daticert
                     else None)
    ctx.verdict(("ACC-18", "ENV-16"), seen.get("breve") == ("breve", "breve"), "breve requested, breve carried",
                expected="breve / breve", actual=str(seen.get("breve")))
    ctx.verdict(("ACC-18", "ENV-16"), seen.get("default", (None, None))[1] == "completa"
                and seen.get("default", (None,))[0] in ("completa", None),
                "nothing requested: completa", expected="completa", actual=str(seen.get("default")), decision="D20")


@scenario("formal.index-refresh", "The target refreshes its copy of the providers index",
          "A new domain is added to the counterpart's record in the published index; after the target's "
          "refresh interval, a recipient in that domain is classified certificato instead of esterno.",
          ["IDX-07", "ACC-14"], needs=("index_refresh",), timers=True)
def index_refresh(ctx: ScenarioContext) -> None:
    import dataclasses
    import time

    from ..engine.core import Skip

    if ctx.world.republish_index is None:
        raise Skip("the suite cannot publish the index this target loads")
    domain = f"nuovo{ctx.token}.test"
    rcpt = f"utente@{domain}"

    def label() -> str | None:
        seen = len(ctx.mailbox(0, [Kind.ACCETTAZIONE]))
        ctx.submit(ctx.original(rcpt, tipo="sintetica", subject=f"indice {time.monotonic():.3f}"), [rcpt])
        got = ctx.wait_mailbox(0, Kind.ACCETTAZIONE, count=seen + 1)
        d = got[seen].message.daticert if len(got) > seen else None
        return d.destinatari[0].tipo if d and d.destinatari else None

    before = label()
    records = [dataclasses.replace(r, managed_domains=(*r.managed_domains, domain))
               if r.provider_name == ctx.world.counterpart_credentials.provider_name and r.is_main else r
               for r in ctx.world.validation.index.records]
    ctx.world.republish_index(records)
    from ..pec.index import ProvidersIndex

    ctx.world.validation.index = ProvidersIndex(records)  # the suite judges with the index it published
    ctx.pause(ctx.seconds(float(ctx.world.profile.capability("index_refresh"))) + 1.0)
    after = label()
    ctx.verdict(("IDX-07", "ACC-14"), before == "esterno" and after == "certificato",
                "the domain added to the index is recognised after the refresh interval",
                expected="esterno, then certificato", actual=f"{before}, then {after}")

"""Acceptance at the target's access point (ACC, SIZ, LIM, ENV, MUL-01/02): the user submits, the
target accepts with a receipt and sends the transport envelope, or refuses with a notice."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from ..engine.core import ScenarioContext, scenario
from ..pec.constants import Kind


def _same_instant(a, b) -> bool:
    try:
        return abs(parsedate_to_datetime(a) - parsedate_to_datetime(b)).total_seconds() <= 1
    except (TypeError, ValueError):
        return False


@scenario("acceptance.single", "One recipient at another provider",
          "A user sends to one counterpart mailbox; the target answers with an acceptance receipt and sends "
          "the counterpart a transport envelope with the routing data unchanged.",
          ["ACC-12", "ACC-13", "ACC-15", "ACC-16", "ACC-17", "ENV-03", "ENV-14", "GEN-01", "TIM-02", "SEC-03"])
def single(ctx: ScenarioContext) -> None:
    raw = ctx.original(ctx.peer(0))
    out = ctx.submit(raw, [ctx.peer(0)])
    ctx.verdict("ACC-17", out.accepted, "the access point accepts a correct submission",
                expected="250", actual=f"{out.code} {out.text}")
    receipts = ctx.wait_mailbox(0, Kind.ACCETTAZIONE, within=20)
    ctx.verdict(("ACC-12", "GEN-01"), len(receipts) == 1, "one acceptance receipt in the sender's mailbox",
                expected="1", actual=str(len(receipts)))
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO, within=20)
    ctx.verdict("ACC-17", len(envelopes) == 1, "one transport envelope reaches the counterpart",
                expected="1", actual=str(len(envelopes)))
    if not envelopes:
        return
    rec = ctx.counterpart_got(Kind.BUSTA_TRASPORTO)[0]
    ctx.verdict("ENV-14", rec.mail_from.lower() == ctx.user(0) and [r.lower() for r in rec.rcpts] == [ctx.peer(0)],
                "routing data unchanged: MAIL FROM the sender, RCPT TO the recipient",
                expected=f"{ctx.user(0)} -> {ctx.peer(0)}", actual=f"{rec.mail_from} -> {', '.join(rec.rcpts)}")
    ctx.verdict("SEC-03", rec.tls, "the envelope travels over TLS (STARTTLS) between providers",
                expected="STARTTLS", actual="TLS" if rec.tls else "plain SMTP")
    if receipts:
        acc, env = receipts[0].message, envelopes[0].message
        ctx.verdict(("TIM-02", "ENV-03"), _same_instant(acc.header("date"), env.header("date")),
                    "acceptance and envelope carry one time value", expected=acc.header("date"),
                    actual=env.header("date"))
        same_id = bool(acc.daticert and env.daticert and acc.daticert.identificativo == env.daticert.identificativo)
        ctx.verdict("ACC-15", same_id, "the acceptance names the envelope's PEC identifier",
                    expected=env.daticert.identificativo if env.daticert else None,
                    actual=acc.daticert.identificativo if acc.daticert else None)


@scenario("acceptance.mixed-recipients", "PEC and ordinary recipients, To and Cc",
          "A user sends to two counterpart mailboxes (To and Cc) and an ordinary address; one acceptance "
          "lists all three with their labels; both PEC recipients and the ordinary one get the envelope.",
          ["MUL-01", "MUL-02", "ACC-14", "ENV-15", "ENV-01", "MUL-08"])
def mixed(ctx: ScenarioContext) -> None:
    to, cc, ext = ctx.peer(0), ctx.peer(1), ctx.outsider(0)
    out = ctx.submit(ctx.original([to, ext], cc=cc), [to, ext, cc])
    ctx.verdict("MUL-01", out.accepted, "submission accepted", actual=f"{out.code} {out.text}")
    receipts = ctx.wait_mailbox(0, Kind.ACCETTAZIONE)
    ctx.verdict("MUL-01", len(receipts) == 1, "one acceptance for the whole message", actual=str(len(receipts)))
    if receipts and receipts[0].message.daticert:
        d = receipts[0].message.daticert
        kinds = {r.address.lower(): r.tipo for r in d.destinatari}
        ctx.verdict(("ACC-14", "MUL-01"), kinds == {to: "certificato", cc: "certificato", ext: "esterno"},
                    "recipients labelled certificato / esterno", expected=f"{to}, {cc}: certificato; {ext}: esterno",
                    actual=", ".join(f"{a}: {t}" for a, t in sorted(kinds.items())))
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO)
    got = {r.lower() for rec in ctx.counterpart_got(Kind.BUSTA_TRASPORTO) for r in rec.rcpts}
    ctx.verdict("MUL-02", got == {to, cc}, "the envelope reaches both PEC recipients", expected=f"{to}, {cc}",
                actual=", ".join(sorted(got)) or "none")
    outside = ctx.wait_ordinary()
    ctx.verdict("ENV-15", any(c.message.kind is Kind.BUSTA_TRASPORTO for c in outside),
                "the ordinary recipient gets the same signed envelope", actual=str([str(c.message.kind) for c in outside]))
    if envelopes and outside:
        ids = {envelopes[0].message.header("message-id"), outside[0].message.header("message-id")}
        ctx.verdict("MUL-02", len(ids) == 1, "one PEC identifier for every recipient", actual=", ".join(map(str, ids)))


@scenario("acceptance.fifty-recipients", "Fifty recipients (the decree's floor)",
          "A user sends one message to 50 recipients, one at the counterpart and 49 ordinary addresses; the "
          "target must accept it (decree art. 12).",
          ["LIM-01"])
def fifty(ctx: ScenarioContext) -> None:
    domain = ctx.outsider(0).rpartition("@")[2]
    rcpts = [ctx.peer(0)] + [f"destinatario{i:02d}.{ctx.token}@{domain}" for i in range(1, 50)]
    out = ctx.submit(ctx.original(rcpts, tipo="sintetica"), rcpts)
    receipts = ctx.wait_mailbox(0, Kind.ACCETTAZIONE)
    refused = ctx.mailbox(0, [Kind.NON_ACCETTAZIONE])
    ok = out.accepted and len(receipts) == 1 and not refused
    listed = len(receipts[0].message.daticert.destinatari) if receipts and receipts[0].message.daticert else 0
    ctx.verdict("LIM-01", ok and listed == 50, "a message to 50 recipients is accepted and all 50 are listed",
                decision="D17", expected="accettazione listing 50 recipients",
                actual=f"SMTP {out.code}; {len(receipts)} accettazione ({listed} listed), {len(refused)} refusal")


@scenario("acceptance.bcc-refused", "Bcc is refused",
          "A user's message carries a Bcc address; the target must not accept it: a non-acceptance notice "
          "(decision D30 accepts an SMTP refusal with a warning) and no envelope.",
          ["ACC-08", "ACC-09", "GEN-03"])
def bcc(ctx: ScenarioContext) -> None:
    raw = ctx.original(ctx.peer(0), extra=[("Bcc", ctx.peer(1))])
    out = ctx.submit(raw, [ctx.peer(0)])
    _refused(ctx, out, ("ACC-08", "ACC-09", "GEN-03"))


def _refused(ctx: ScenarioContext, out, reqs) -> None:
    if not out.accepted:
        ctx.verdict(reqs, False, "refused at SMTP level instead of an avviso di non accettazione", soft=True,
                    decision="D30", expected="avviso di non accettazione", actual=f"SMTP {out.code} {out.text}")
    else:
        notices = ctx.wait_mailbox(0, Kind.NON_ACCETTAZIONE, within=15)
        ctx.verdict(reqs, len(notices) == 1, "an avviso di non accettazione reaches the sender",
                    expected="1", actual=str(len(notices)), decision="D30")
    accepted = ctx.mailbox(0, [Kind.ACCETTAZIONE])
    envelopes = ctx.counterpart_got(Kind.BUSTA_TRASPORTO)
    ctx.verdict("ACC-09", not accepted and not envelopes, "no acceptance and no envelope for a refused message",
                expected="none", actual=f"{len(accepted)} accettazione, {len(envelopes)} envelope")


@scenario("acceptance.sender-mismatch", "Sender differs from the authenticated user",
          "Authenticated as one user, the client sends as another mailbox; the target refuses (SMTP 5xx or "
          "a non-acceptance notice, decision D14).", ["ACC-19", "ACC-06"])
def sender_mismatch(ctx: ScenarioContext) -> None:
    other = ctx.user(1)
    raw = ctx.original(ctx.peer(0), sender=other)
    out = ctx.submit(raw, [ctx.peer(0)], mail_from=other)
    if not out.accepted:
        ctx.verdict("ACC-19", True, "refused at submission", decision="D14", actual=f"SMTP {out.code}")
    else:
        notices = ctx.wait_mailbox(1, Kind.NON_ACCETTAZIONE, within=10) + ctx.mailbox(0, [Kind.NON_ACCETTAZIONE])
        ctx.verdict("ACC-19", bool(notices), "a non-acceptance notice for the forged sender", decision="D14",
                    actual=f"{len(notices)} notice(s)")
    ctx.verdict("ACC-19", not ctx.counterpart_got(Kind.BUSTA_TRASPORTO), "no envelope leaves for a forged sender",
                decision="D14", actual=f"{len(ctx.counterpart_got(Kind.BUSTA_TRASPORTO))} envelope(s)")


@scenario("acceptance.hidden-recipient", "A recipient outside To and Cc",
          "RCPT TO names a mailbox that the To and Cc fields do not list; the target refuses.",
          ["ACC-07", "ACC-09"])
def hidden(ctx: ScenarioContext) -> None:
    out = ctx.submit(ctx.original(ctx.peer(0)), [ctx.peer(0), ctx.peer(1)])
    _refused(ctx, out, ("ACC-07", "ACC-09"))


@scenario("acceptance.unauthenticated", "Submission without authentication",
          "A client tries to submit without AUTH; the access point refuses it (no PEC processing).",
          ["ACC-01", "SEC-02"])
def unauthenticated(ctx: ScenarioContext) -> None:
    out = ctx.submit(ctx.original(ctx.peer(0)), [ctx.peer(0)], authenticate=False)
    ctx.verdict(("ACC-01", "SEC-02"), not out.accepted, "unauthenticated submission refused",
                expected="5xx", actual=f"{out.code} {out.text}")
    ctx.verdict("ACC-01", not ctx.quiet_mailbox(0, Kind.ACCETTAZIONE, during=1.0),
                "no acceptance for an unauthenticated submission")


@scenario("acceptance.oversize", "Beyond the declared size limit",
          "A message above the provider's declared limit (size times recipients) is not accepted.",
          ["SIZ-01", "SIZ-03", "LIM-02", "MUL-07"], needs=("max_total_size",))
def oversize(ctx: ScenarioContext) -> None:
    limit = int(ctx.world.profile.capability("max_total_size"))
    per = limit // 2 + 1024
    domain = ctx.peer(0).rpartition("@")[2]
    rcpts = [ctx.peer(0), f"secondo@{domain}"]
    raw = ctx.original(rcpts, attachment=b"A" * per, tipo="sintetica")
    out = ctx.submit(raw, rcpts)
    if out.accepted:
        notices = ctx.wait_mailbox(0, Kind.NON_ACCETTAZIONE, within=15)
        ctx.verdict(("SIZ-01", "MUL-07", "LIM-02"), bool(notices), "size x recipients above the limit: non-acceptance",
                    expected="avviso di non accettazione", actual=f"{len(notices)} notice(s)")
    else:
        ctx.verdict("SIZ-03", out.code >= 500, "refused at SMTP level (above a further bound)",
                    actual=f"{out.code}")
    ctx.verdict("SIZ-01", not ctx.counterpart_got(Kind.BUSTA_TRASPORTO), "no envelope for an oversize message")

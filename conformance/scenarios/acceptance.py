"""Acceptance at the target's access point (ACC, SIZ, LIM, ENV, MUL-01/02): the user submits, the
target accepts with a receipt and sends the transport envelope, or refuses with a notice."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from ..engine.core import Blocked, Control, ScenarioContext, SubmitOutcome, scenario
from ..pec.constants import ERRORE_ALTRO, Kind

FLOOR_TEST = 29_900_000  # bytes: just under the decree's 30 MB floor, one recipient (LIM-02)


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
          "A user's message carries a Bcc address; the same message without it is accepted, this one is not: "
          "a non-acceptance notice (decision D30 accepts an SMTP refusal with a warning) and no envelope.",
          ["ACC-08", "ACC-09", "GEN-03"])
def bcc(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    out = ctx.submit(ctx.original(ctx.peer(0), extra=[("Bcc", ctx.peer(1))]), [ctx.peer(0)])
    refused(ctx, out, ctl, ("ACC-08", "GEN-03"), cause=("recipient", "format"), what="Bcc")


def refused(ctx: ScenarioContext, out: SubmitOutcome, ctl: Control, reqs: tuple[str, ...], *, cause,
            what: str, user: int = 0, errore: str | None = ERRORE_ALTRO, notice=Kind.NON_ACCETTAZIONE,
            smtp_refusal: str = "WARN", decision: str | None = "D30", leak: str = "ACC-09") -> str:
    """A defective submission refused for its defect (against the positive control `ctl`), and nothing of it
    leaving (ACC-09): judged only once the control's own envelope was seen to leave."""
    verdict = ctx.judge_refusal(reqs, out, ctl, notice_kind=notice, errore=errore, cause=cause, user=user,
                                smtp_refusal=smtp_refusal, decision=decision, what=what)
    if verdict == "BLOCKED":
        ctx.blocked(leak, f"{what}: the refusal could not be judged")
        return verdict
    no_leak(ctx, ctl, what, leak)
    return verdict


def no_leak(ctx: ScenarioContext, ctl: Control, what: str, req: str = "ACC-09") -> None:
    """No acceptance and no envelope for the defective message: meaningful only once the control's envelope
    reached the counterpart (the path out works)."""
    mark = ctl.subject_marker

    def control_envelope(rec) -> bool:
        return mark in rec.message.subject

    end = ctx.deadline(10)  # polled, not captured: the control's envelope is not what is judged here
    while not ctx.counterpart_got(Kind.BUSTA_TRASPORTO, where=control_envelope) and time.monotonic() < end:
        ctx.pause(0.1)
    if not ctx.counterpart_got(Kind.BUSTA_TRASPORTO, where=control_envelope):
        ctx.blocked(req, f"{what}: the control's envelope never reached the counterpart, so no envelope for the "
                         "defective message proves nothing")
        return
    accepted = [c for c in ctx.mailbox(0, [Kind.ACCETTAZIONE]) if mark not in c.message.subject]
    envelopes = [r for r in ctx.counterpart_got(Kind.BUSTA_TRASPORTO) if not control_envelope(r)]
    ctx.verdict(req, not accepted and not envelopes, f"{what}: no acceptance and no envelope for the refused message",
                expected="none (the control's envelope left)",
                actual=f"{len(accepted)} accettazione, {len(envelopes)} envelope")


@scenario("acceptance.sender-mismatch", "Sender differs from the authenticated user",
          "Authenticated as one user, the client sends as another mailbox; the same message sent as itself is "
          "accepted, this one is refused (SMTP 5xx or a non-acceptance notice, decision D14).", ["ACC-19"])
def sender_mismatch(ctx: ScenarioContext) -> None:
    other = ctx.user(1)
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    out = ctx.submit(ctx.original(ctx.peer(0), sender=other), [ctx.peer(0)], mail_from=other)
    forged_sender(ctx, out, ctl, ("ACC-19",), "forged sender", leak="ACC-19")


def forged_sender(ctx: ScenarioContext, out: SubmitOutcome, ctl: Control, reqs: tuple[str, ...], what: str, *,
                  leak: str) -> None:
    """Refused for the sender (D14): an SMTP 5xx, or a non-acceptance notice in the authenticated user's
    mailbox or the named sender's."""
    if out.accepted and ctl.accepted:
        notices = [c for c in ctx.wait_mailbox(0, Kind.NON_ACCETTAZIONE, within=10)
                   if ctl.subject_marker not in c.message.subject] + ctx.mailbox(1, [Kind.NON_ACCETTAZIONE])
        ctx.verdict(reqs, bool(notices), f"{what}: a non-acceptance notice", decision="D14",
                    expected="avviso di non accettazione", actual=f"SMTP {out.code}; {len(notices)} notice(s)")
        if notices:
            no_leak(ctx, ctl, what, leak)
        return
    refused(ctx, out, ctl, reqs, cause=("sender", "auth"), what=what, smtp_refusal="PASS", decision="D14",
            errore=None, leak=leak)


@scenario("acceptance.hidden-recipient", "A recipient outside To and Cc",
          "RCPT TO names a mailbox that the To and Cc fields do not list; the same message to its listed "
          "recipient only is accepted, this one is refused.", ["ACC-07", "ACC-09"])
def hidden(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    out = ctx.submit(ctx.original(ctx.peer(0)), [ctx.peer(0), ctx.peer(1)])
    refused(ctx, out, ctl, ("ACC-07",), cause="recipient", what="hidden recipient")


@scenario("acceptance.unauthenticated", "Submission without authentication",
          "A client tries to submit without AUTH; the same message after AUTH is accepted, this one is refused "
          "with a permanent error (no PEC processing).", ["ACC-01", "SEC-02"])
def unauthenticated(ctx: ScenarioContext) -> None:
    ctl = ctx.control(ctx.original(ctx.peer(0)), [ctx.peer(0)])
    if not ctl.accepted:
        raise Blocked(None, ctl.detail)
    out = ctx.submit(ctx.original(ctx.peer(0)), [ctx.peer(0)], authenticate=False)
    # Here an "authentication required" reply (530) is exactly the refusal the rule asks for.
    ctx.verdict(("ACC-01", "SEC-02"), out.permanent, "unauthenticated submission refused with a permanent error",
                expected="5xx (530 authentication required)", actual=str(out), evidence=out.evidence)
    if out.accepted:
        got = ctx.wait_mailbox(0, Kind.ACCETTAZIONE, within=5, where=lambda c: ctl.subject_marker not in c.message.subject)
        ctx.verdict("ACC-01", not got, "no acceptance for an unauthenticated submission",
                    actual=f"{len(got)} accettazione")


def sized(ctx: ScenarioContext, rcpts: list[str], size: int, subject: str) -> bytes:
    """A user's message of exactly `size` bytes: an attachment sized from a small trial build (base64 in
    76-character lines), then a padding field for the last bytes."""
    first = ctx._counter  # the trial and the real build are one message (one Message-ID)

    def b64(n: int) -> int:
        chars = 4 * -(-n // 3)
        return chars + 2 * -(-chars // 76)

    trial = ctx.original(rcpts, attachment=b"A" * 3000, tipo="sintetica", subject=subject)
    base = len(trial) - b64(3000)
    n = max(0, (size - 200 - base) * 3 // 4)
    while n and base + b64(n) > size - 200:
        n -= 57
    ctx._counter = first
    raw = ctx.original(rcpts, attachment=b"A" * n, tipo="sintetica", subject=subject)
    head, sep, body = raw.partition(b"\r\n\r\n")
    filler = b"X-Riempimento: "
    pad = size - len(raw) - len(filler) - 2
    if pad > 0:
        head += b"\r\n" + filler + b"x" * pad
    return head + sep + body


@scenario("acceptance.oversize", "Around the declared size limit",
          "A 29.9 MB message to one recipient is accepted (the decree's floor); a message whose size times its "
          "two recipients is just above the declared limit is not accepted: a non-acceptance notice (an SMTP "
          "refusal is a warning, D30) and no envelope.",
          ["LIM-02", "SIZ-01", "MUL-07", "ACC-09"], needs=("max_total_size",))
def oversize(ctx: ScenarioContext) -> None:
    limit = int(ctx.world.profile.capability("max_total_size"))
    floor = sized(ctx, [ctx.peer(0)], FLOOR_TEST, "al limite")
    ctl = ctx.control(floor, [ctx.peer(0)], within=60, requirements=("LIM-02",))
    if ctl.accepted:
        ctx.verdict("LIM-02", True, "a 29.9 MB message to one recipient is accepted", decision="D17",
                    expected="accettazione", actual=f"{len(floor)} bytes: {ctl.detail}")
    domain = ctx.peer(0).rpartition("@")[2]
    rcpts = [ctx.peer(0), f"secondo-{ctx.token}@{domain}"]
    big = sized(ctx, rcpts, limit // 2 + 1, "oltre il limite")
    out = ctx.submit(big, rcpts)
    ctx.info("MUL-07", f"{len(big)} bytes x {len(rcpts)} recipients = {len(big) * len(rcpts)} bytes; "
                       f"declared limit {limit}")
    refused(ctx, out, ctl, ("SIZ-01", "MUL-07", "LIM-02"), cause="size", what="size x recipients over the limit")

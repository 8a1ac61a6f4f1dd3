"""One complete transaction watched end to end (GEN-13, GEN-14, FMT-12, TIM-01, TIM-06, RIC-01, CON-22,
SEC-08), and the sender side's handling of a peer that keeps deferring or answers late (TMO-01, TMO-11,
TMO-13), and of the XML as the only machine-readable truth (GEN-11)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from ..engine.core import Blocked, ScenarioContext, scenario
from ..pec.constants import Kind
from ..pec.mime import CRLF
from .incoming import strip_trace


@scenario("transaction.complete", "A complete transaction, end to end",
          "A user sends to a counterpart mailbox; acceptance, envelope, presa in carico and delivery receipt "
          "follow in order, all naming the same PEC identifier, dated on an accurate clock; the receipt reaches "
          "the user exactly as the counterpart sent it.",
          ["GEN-13", "GEN-14", "FMT-12", "TIM-01", "TIM-06", "RIC-01", "CON-22", "SEC-08", "SEC-05"])
def complete(ctx: ScenarioContext) -> None:
    before = time.time()
    out = ctx.submit(ctx.original(ctx.peer(0), tipo="sintetica"), [ctx.peer(0)])
    after = time.time()
    receipts = ctx.wait_mailbox(0, Kind.ACCETTAZIONE)
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO)
    delivered = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA)
    ctx.info("GEN-13", "acceptance, envelope over SMTP, then the delivery receipt",
             actual=f"SMTP {out.code}; {len(receipts)} accettazione, {len(envelopes)} envelope, "
                    f"{len(delivered)} consegna")
    if not out.accepted:
        ctx.blocked(("GEN-14", "FMT-12", "TIM-01", "TIM-06", "RIC-01", "CON-22", "SEC-08", "SEC-05"),
                    f"the submission was not accepted ({out.code} {out.text[:80]})")
        return
    if not envelopes:
        ctx.verdict("ACC-17", False, "an accepted message produces a transport envelope", expected="1 envelope",
                    actual="none reached the counterpart")
    if not (receipts and envelopes and delivered):
        ctx.blocked(("GEN-14", "FMT-12", "TIM-01", "TIM-06", "RIC-01", "CON-22", "SEC-08", "SEC-05"),
                    f"the transaction did not complete: {len(receipts)} accettazione, {len(envelopes)} envelope, "
                    f"{len(delivered)} consegna")
        return
    acc, env, cons = receipts[0].message, envelopes[0].message, delivered[0].message
    traces = env.header_all("received")
    foreign = [t for t in traces if not any(d in t.lower() for d in ctx.world.profile.domains)
               and "127.0.0.1" not in t and "localhost" not in t.lower()]
    if traces:
        ctx.verdict("SEC-05", not foreign, "the envelope's trace shows only the target's own hosts",
                    expected="no foreign relay", actual=f"{len(traces)} Received field(s), {len(foreign)} foreign")
    else:
        ctx.info("SEC-05", "not applicable: the envelope carries no Received field, no path to judge")
    ids = {m.daticert.identificativo for m in (acc, env, cons) if m.daticert}
    ctx.verdict("FMT-12", len(ids) == 1 and env.header("message-id").strip("<>") in ids,
                "one PEC identifier across the transaction, the envelope's Message-ID", actual=", ".join(sorted(ids)))
    try:
        stamp = parsedate_to_datetime(acc.header("date")).timestamp()
    except (TypeError, ValueError):
        stamp = 0.0
    ctx.verdict("TIM-06", before - 1 <= stamp <= after + 1, "the acceptance time lies within the submission "
                "(DATA .. 250) within 1 s", decision=None, expected=f"[{before - 1:.0f}, {after + 1:.0f}]",
                actual=f"{stamp:.0f}")
    ctx.verdict("TIM-01", abs(stamp - (before + after) / 2) <= 5, "the target's clock agrees with the suite's",
                expected="within 5 s", actual=f"{stamp - (before + after) / 2:+.1f} s")
    ctx.verdict("GEN-14", stamp <= parsedate_to_datetime(cons.header("date")).timestamp(),
                "sent at acceptance, received when stored: acceptance before delivery",
                actual=f"{acc.header('date')} / {cons.header('date')}")
    sent = [s for s in ctx.world.counterpart.sent if ctx.token.encode() in s.raw and "consegna" in s.kind]
    if not sent or not sent[0].outcome.ok:
        ctx.blocked(("CON-22", "SEC-08", "RIC-01"), "the counterpart's consegna did not get through to the target")
        return
    same = strip_trace(sent[0].raw) == strip_trace(delivered[0].raw)
    # The envelope came to the counterpart by SMTP; the receipt the user holds is the one the counterpart's
    # SMTP transaction carried, not one made up on the target's side.
    ctx.verdict(("RIC-01", "SEC-08"), same, "envelope and receipt travel between providers by SMTP, the receipt "
                "reaching the user as the counterpart's SMTP transaction carried it (no re-encoding)",
                expected="byte-identical bar trace fields", actual="identical" if same else "different")
    ctx.info("CON-22", f"the receipt travelled by SMTP to the target's incoming point and reached the user "
                       f"{'unchanged' if same else 'changed'}")


@scenario("transaction.peer-defers", "The recipient's provider keeps deferring",
          "The counterpart answers 451 to every delivery attempt; the target keeps retrying, stops after its "
          "idle limit and tells the user with the 24 h notice.", ["TMO-01", "TMO-03", "TMO-11"], timers=True)
def defers(ctx: ScenarioContext) -> None:
    rcpt = f"rinvio.{ctx.token}@{ctx.peer(0).rpartition('@')[2]}"
    ctx.world.counterpart.set_behaviour("defer", recipients=[rcpt])
    start = time.monotonic()
    out = ctx.submit(ctx.original(rcpt), [rcpt])
    if not out.accepted:
        ctx.blocked(("TMO-01", "TMO-03"), f"the submission was not accepted ({out.code} {out.text[:80]})")
        return
    timeout = ctx.timer("timeout", 6.0)
    finals = ctx.wait_mailbox(0, Kind.MANCATA_CONSEGNA_24H, within=timeout + 4)

    def attempts() -> list[float]:
        return sorted(t for t, a in list(ctx.world.counterpart.deferred) if a == rcpt)

    seen = attempts()
    ctx.verdict(("TMO-01", "TMO-03"), len(finals) == 1, "the 24 h notice tells the user", actual=str(len(finals)))
    if len(seen) < 2:
        ctx.blocked("TMO-01", f"the target tried {len(seen)} time(s): no retrying to see stop")
    else:
        # Retrying stops: watch past the idle limit for longer than the target's own last retry gap (a
        # target that kept its cadence would have tried again by then).
        limit = start + ctx.seconds(timeout)
        gap = seen[-1] - seen[-2]
        watch_until = max(limit, time.monotonic()) + max(ctx.seconds(1.5), 1.5 * gap)
        ctx.pause(max(0.0, watch_until - time.monotonic()))
        late = [t for t in attempts() if t > limit + ctx.seconds(0.5)]
        ctx.verdict("TMO-01", not late, "retrying stops at the idle limit",
                    expected=f"no attempt after {timeout:g} s", actual=f"{len(attempts())} attempt(s), "
                    f"{len(late)} after the limit (watched {watch_until - limit:.1f} s past it, last gap {gap:.1f} s)")
    ctx.info("TMO-11", "timers measured from the acceptance (dispatch) time: "
             f"{len(finals)} 24 h notice(s) within {timeout + 4:g} s of the submission")


@scenario("transaction.late-presa", "Presa in carico after 12 hours, no consegna",
          "The counterpart sends the presa in carico only after the 12 h mark and never a consegna: both the "
          "12 h and the 24 h notices reach the user.", ["TMO-13", "TMO-02", "TMO-03"], timers=True)
def late_presa(ctx: ScenarioContext) -> None:
    rcpt = ctx.peer(2)
    pre = ctx.timer("preavviso", 3.0)
    ctx.world.counterpart.set_behaviour("presa-only", delay=ctx.seconds(pre) + 0.7, recipients=[rcpt])
    ctx.submit(ctx.original(rcpt), [rcpt])
    first = ctx.wait_mailbox(0, Kind.PREAVVISO_12H, within=pre + 3)
    final = ctx.wait_mailbox(0, Kind.MANCATA_CONSEGNA_24H, within=ctx.timer("timeout", 6.0) + 3)
    ctx.verdict(("TMO-13", "TMO-02"), len(first) == 1, "the 12 h notice (nothing arrived within 12 h)",
                actual=str(len(first)))
    ctx.verdict(("TMO-13", "TMO-03"), len(final) == 1, "the 24 h notice (a presa in carico does not stop it)",
                actual=str(len(final)))


@scenario("transaction.xml-is-the-truth", "The XML decides, not the text",
          "The counterpart's delivery receipt names the recipient correctly in daticert but another one in "
          "its text; the target's timers follow the XML: no 24 h notice for that recipient, while a silent "
          "recipient of the same message gets one.",
          ["GEN-11"], timers=True)
def xml_truth(ctx: ScenarioContext) -> None:
    domain = ctx.peer(0).rpartition("@")[2]
    rcpt = f"xml-{ctx.token}@{domain}"
    creds = ctx.world.counterpart_credentials

    def misleading(raw: bytes) -> bytes:
        if b"X-Ricevuta: avvenuta-consegna" not in raw:
            return raw
        from ..pec.mime import walk_entity
        from ..pec.smime import sign_entity, split_signed

        signed = split_signed(walk_entity(raw))
        inner = signed.content.replace(rcpt.encode(), f"altro.destinatario@{domain}".encode())
        fields = [(n, str(v)) for n, v in walk_entity(raw).headers.items()
                  if n.lower() not in ("mime-version", "content-type")]
        # daticert is base64: only the readable text changed
        return sign_entity(fields, inner + CRLF, creds.key, creds.certificate)

    silent = f"silenzio-{ctx.token}@{domain}"  # the control: its 24 h notice shows the timers run
    ctx.world.counterpart.set_behaviour("normal", recipients=[rcpt], transform=misleading)
    ctx.world.counterpart.set_behaviour("silent", recipients=[silent])
    ctx.unjudged.add(Kind.CONSEGNA_SINTETICA)  # the counterpart's deliberately odd receipt is not the target's
    out = ctx.submit(ctx.original([rcpt, silent], tipo="sintetica"), [rcpt, silent])
    if not out.accepted:
        raise Blocked(None, f"the submission was not accepted ({out})")
    receipts = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA)
    finals = ctx.quiet_mailbox(0, Kind.MANCATA_CONSEGNA_24H, during=ctx.timer("timeout", 6.0) + 1.5)
    named = [(c.message.daticert.consegna or "").lower() for c in finals if c.message.daticert]
    if not receipts or silent not in named:
        raise Blocked("GEN-11", f"{len(receipts)} receipt(s) relayed, {len(finals)} 24 h notice(s) "
                                f"({', '.join(named) or 'none'}): no timers seen to clear or to run")
    ctx.verdict("GEN-11", rcpt not in named, "the receipt's daticert clears the recipient's timers whatever its "
                "text says (the silent recipient beside it got its 24 h notice)", expected=f"no 24 h notice for {rcpt}",
                actual=", ".join(named))


@scenario("transaction.rejected-then-quiet", "Timers after a non-delivery notice",
          "The counterpart answers a mancata consegna for the recipient; the rules do not say whether the "
          "recipient's timers stop: a later 12 h / 24 h notice and its absence are both conformant (D25).",
          ["TMO-12", "CON-19"], timers=True)
def rejected_then_quiet(ctx: ScenarioContext) -> None:
    rcpt = f"respinto.{ctx.token}@{ctx.peer(0).rpartition('@')[2]}"
    ctx.world.counterpart.set_behaviour("reject-recipient", recipients=[rcpt])
    ctx.submit(ctx.original(rcpt, tipo="sintetica"), [rcpt])
    rejected = ctx.wait_mailbox(0, Kind.MANCATA_CONSEGNA)
    ctx.verdict("CON-19", len(rejected) == 1, "the counterpart's non-delivery notice reaches the user",
                actual=str(len(rejected)))
    later = ctx.quiet_mailbox(0, Kind.MANCATA_CONSEGNA_24H, during=ctx.timer("timeout", 6.0) + 1.0)
    later += ctx.mailbox(0, [Kind.PREAVVISO_12H])
    ctx.info("TMO-12", f"timers after a non-delivery: {len(later)} timeout notice(s); both readings conform",
             decision="D25", actual=f"{len(later)} notice(s)")

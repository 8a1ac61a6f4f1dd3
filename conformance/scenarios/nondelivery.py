"""Non-delivery (CON-18..20, MUL-04, RIC-09/13, NOT-01/02; decisions D6, D18): the recipient's provider
cannot deliver. When the counterpart is that provider, its avviso di mancata consegna reaches the target's
user unchanged; when the target is, it takes the envelope in charge and answers the original sender with
its own avviso di mancata consegna (errore no-dest, errore-esteso `5.1.1 - <gestore> - ...`)."""

from __future__ import annotations

import re

from ..counterpart import forge
from ..engine.core import Blocked, ScenarioContext, scenario
from ..pec.constants import ERRORE_ALTRO, ERRORE_NO_DEST, Kind
from ..pec.parse import parse_message

CONSEGNE = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)
_ERROR_STRING = re.compile(r"^(\d\.\d{1,3}\.\d{1,3}) - (.+?) - (.+)$", re.DOTALL)
_TRACE = (b"return-path:", b"received:", b"delivered-to:", b"x-original-to:")


def _unchanged(delivered: bytes, sent: bytes) -> bool:
    """The same bytes, bar trace fields a delivery agent puts on top (CON-04)."""
    if delivered == sent:
        return True
    if not sent or not delivered.endswith(sent):
        return False
    head = delivered[: len(delivered) - len(sent)]
    return all(ln.lower().startswith(_TRACE) or ln[:1] in (b" ", b"\t") for ln in head.split(b"\r\n") if ln.strip())


@scenario("nondelivery.counterpart-rejects", "The recipients' provider cannot deliver",
          "A user sends to two counterpart mailboxes that the counterpart cannot deliver to; it takes the "
          "envelope in charge and answers one avviso di mancata consegna per recipient; the target hands each "
          "notice to its user byte for byte, shows no presa in carico and sends nothing back.",
          ["RIC-13", "MUL-04", "CON-04", "GEN-01", "GEN-07", "CON-03"])
def counterpart_rejects(ctx: ScenarioContext) -> None:
    domain = ctx.peer(0).rpartition("@")[2]
    rcpts = [f"rifiuto{i}-{ctx.token}@{domain}" for i in (1, 2)]
    cp = ctx.world.counterpart
    cp.set_behaviour("reject-recipient", recipients=rcpts)
    out = ctx.submit(ctx.original(rcpts, tipo="sintetica"), rcpts)
    if not out.accepted:  # a correct submission refused is ACC-17's failure, judged in acceptance.single
        raise Blocked(None, f"the submission was not accepted ({out})")
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO, within=10)
    ctx.verdict("MUL-02", len(envelopes) == 1, "the envelope reaches the counterpart", expected="1",
                actual=str(len(envelopes)))
    notices = ctx.wait_mailbox(0, Kind.MANCATA_CONSEGNA, count=len(rcpts), within=15)
    by_rcpt = {(c.message.daticert.consegna or "").lower(): c for c in notices if c.message.daticert}
    ctx.verdict(("MUL-04", "RIC-13"), set(by_rcpt) == set(rcpts) and len(notices) == len(rcpts),
                "one avviso di mancata consegna per rejected recipient reaches the sender",
                expected=", ".join(rcpts), actual=", ".join(sorted(by_rcpt)) or "none")
    ident = envelopes[0].message.daticert.identificativo if envelopes and envelopes[0].message.daticert else None
    sent = {}
    for s in cp.sent_matching(lambda s: s.kind == str(Kind.MANCATA_CONSEGNA) and s.related == ident):
        d = parse_message(s.raw).daticert
        sent[(d.consegna or "").lower() if d else ""] = s.raw
    for rcpt in rcpts:
        cap, raw = by_rcpt.get(rcpt), sent.get(rcpt)
        if cap is not None and raw is not None:
            ctx.verdict(("RIC-13", "CON-04"), _unchanged(cap.raw, raw),
                        f"the counterpart's notice for {rcpt} is delivered unchanged", evidence=cap.evidence,
                        expected=f"{len(raw)} bytes as sent", actual=f"{len(cap.raw)} bytes delivered")
    presa = ctx.quiet_mailbox(0, Kind.PRESA_IN_CARICO, during=1.0)
    taken = cp.sent_matching(lambda s: s.kind == str(Kind.PRESA_IN_CARICO) and s.related == ident and s.outcome.ok)
    if presa or taken:  # the counterpart's presa in carico reached the target: where it went counts
        ctx.verdict("GEN-07", not presa, "no presa in carico in the sender's mailbox", expected="none",
                    actual=f"{len(presa)} presa in carico")
    else:
        ctx.blocked("GEN-07", "no presa in carico of the counterpart was taken by the target")
    back = [r for r in ctx.counterpart_got() if r.message.kind is not Kind.BUSTA_TRASPORTO]
    if by_rcpt or back:
        ctx.verdict(("RIC-13", "CON-03"), not back, "nothing goes back to the counterpart for its notices",
                    expected="none", actual=", ".join(str(r.message.kind) for r in back) or "none")
    else:
        ctx.blocked("CON-03", "none of the counterpart's notices reached the user: nothing to answer or not")


@scenario("nondelivery.unknown-mailbox-at-target", "An envelope for a mailbox the target does not have",
          "The counterpart sends the target a correct envelope for an address of the target's domain that "
          "has no mailbox; the target takes it in charge (presa in carico to the counterpart's mailReceipt) "
          "and sends the original sender one avviso di mancata consegna: errore no-dest (altro: warning), "
          "errore-esteso 5.1.1; no delivery receipt.",
          ["CON-18", "CON-19", "CON-20", "NOT-01", "NOT-02", "MUL-04", "RIC-09", "MUL-03", "GEN-01", "CON-02"])
def unknown_mailbox(ctx: ScenarioContext) -> None:
    missing = f"nessuno-{ctx.token}@{ctx.world.profile.domains[0]}"
    cp = ctx.world.counterpart
    original = ctx.original(missing, sender=ctx.peer(0), tipo="sintetica")
    raw, t = forge.envelope(ctx.world.counterpart_credentials, original)
    code = ctx.inject(raw, [missing], mail_from=t.mittente, label="envelope")
    if code >= 500:
        ctx.verdict("CON-18", False, "the envelope is refused at SMTP level instead of an avviso di mancata consegna",
                    soft=True, expected="250, then an avviso di mancata consegna", actual=str(code))
        return
    ctx.verdict("RIC-09", 200 <= code < 300, "the incoming point accepts a correct envelope", expected="250",
                actual=str(code))
    presa = ctx.wait_counterpart(Kind.PRESA_IN_CARICO, within=10)
    to_box = [r for r in ctx.counterpart_got(Kind.PRESA_IN_CARICO) if cp.receipt_mailbox.lower() in
              [x.lower() for x in r.rcpts]]
    ctx.verdict("RIC-09", len(presa) == 1 and len(to_box) == 1,
                "one presa in carico reaches the counterpart's mailReceipt", expected=f"1 to {cp.receipt_mailbox}",
                actual=f"{len(presa)} presa in carico, {len(to_box)} to the mailReceipt")
    if presa and presa[0].message.daticert:
        covered = [r.lower() for r in presa[0].message.daticert.ricezione]
        ctx.verdict(("RIC-09", "MUL-03"), covered == [missing], "the presa in carico covers the recipient",
                    expected=missing, actual=", ".join(covered) or "none")
    notices = ctx.wait_counterpart(Kind.MANCATA_CONSEGNA, within=10)
    to_sender = [r for r in ctx.counterpart_got(Kind.MANCATA_CONSEGNA) if [x.lower() for x in r.rcpts] == [t.mittente]]
    ctx.verdict(("CON-18", "MUL-04"), len(notices) == 1, "one avviso di mancata consegna for the unknown mailbox",
                expected="1", actual=str(len(notices)))
    if notices:
        ctx.verdict(("CON-19", "GEN-01"), len(to_sender) == 1, "the notice goes to the envelope's reverse path",
                    expected=t.mittente, actual=", ".join(x for r in ctx.counterpart_got(Kind.MANCATA_CONSEGNA)
                                                         for x in r.rcpts))
        _judge_notice(ctx, notices[0].message, missing)
    receipts = [r for r in ctx.counterpart_got() if r.message.kind in CONSEGNE]
    if notices or receipts:  # the target answered the envelope: which answer it chose counts
        ctx.verdict("CON-02", not receipts, "no delivery receipt for a mailbox that does not exist", expected="none",
                    actual=f"{len(receipts)} receipt(s)")
    else:
        ctx.blocked("CON-02", "the target answered the envelope with no notice at all")


def _judge_notice(ctx: ScenarioContext, msg, missing: str) -> None:
    d = msg.daticert
    if d is None:
        ctx.verdict("CON-20", False, "the avviso di mancata consegna has no daticert", expected="daticert.xml")
        return
    ctx.verdict("CON-20", (d.consegna or "").lower() == missing, "the notice names the recipient in consegna",
                expected=missing, actual=d.consegna)
    if d.errore == ERRORE_NO_DEST:
        ctx.verdict(("CON-20", "NOT-02"), True, "errore=no-dest for an unknown mailbox", decision="D6")
    elif d.errore == ERRORE_ALTRO:
        ctx.verdict("CON-20", True, "errore=altro is allowed for a delivery error", decision="D6")
        ctx.verdict("NOT-02", False, "generic errore=altro for an unknown mailbox", soft=True, decision="D6",
                    expected=ERRORE_NO_DEST, actual=ERRORE_ALTRO)
    else:
        ctx.verdict("CON-20", False, "errore does not name a delivery error", decision="D6",
                    expected="no-dest (altro: warning)", actual=d.errore)
    m = _ERROR_STRING.match((d.errore_esteso or "").strip())
    ctx.verdict(("NOT-01", "NOT-02"), bool(m) and m.group(1) == "5.1.1",
                "errore-esteso is '5.1.1 - <gestore> - <descrizione>'", soft=True, decision="D18",
                expected="5.1.1 - <gestore> - <descrizione>", actual=d.errore_esteso or "missing")
    if m:
        text = " ".join((msg.text_plain or "").split())
        ctx.verdict("NOT-01", " ".join(d.errore_esteso.split()) in text, "the text carries the errore-esteso string",
                    soft=True, decision="D18", expected=d.errore_esteso)

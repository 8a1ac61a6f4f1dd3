"""Anomalies at the target's incoming point (ANO-01..15, RIC-03..08, RIC-14, SIG-14, CON-03): ordinary
mail and envelopes that fail the signature tests are ordinary mail, wrapped in an anomaly envelope when the
target forwards ordinary mail (decision D15) or refused at SMTP level when it does not; a validly signed
message that is not a correct envelope always travels in an anomaly envelope (ANO-14). None of them is
acknowledged: no presa in carico, no consegna (ANO-13)."""

from __future__ import annotations

import re
import time
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from ..counterpart import forge
from ..engine.core import Blocked, Captured, ScenarioContext, Skip, scenario
from ..pec.constants import Kind
from ..pec.mime import CRLF, split_entity, walk_entity
from ..pec.parse import parse_message
from ..pec.smime import sign_entity, split_signed
from .incoming import QUIET, nothing_back, same_message

PREFIX = "ANOMALIA MESSAGGIO: "
NOTHING_BACK = ("ANO-13", "CON-03", "RIC-14", "SIG-14")


def expect_anomaly(ctx: ScenarioContext, sent: bytes, *, senders: set[str], reqs=(), sent_at: float,
                   index: int = 0) -> Captured | None:
    """The user's mailbox holds the received message inside a correct anomaly envelope."""
    end = ctx.deadline(20)  # the anomaly, or whatever came instead (not the control's envelope)
    while not (arrived := [c for c in ctx.mailbox(index) if _not_control(c)]) and time.monotonic() < end:
        ctx.pause(0.1)
    got = [c for c in arrived if c.message.kind is Kind.BUSTA_ANOMALIA]
    ctx.verdict((*reqs, "ANO-01"), len(got) == 1, "the message reaches the user inside an anomaly envelope",
                expected="1 busta di anomalia", actual=str(len(got)))
    if not got:
        return None
    m, original = got[0].message, parse_message(sent)
    ctx.verdict("ANO-02", same_message(m.postacert, sent), "the whole received message is attached unchanged",
                expected=f"{len(sent)} bytes as sent", actual=f"{len(m.postacert or b'')} bytes")
    ctx.verdict("ANO-04", m.header_all("x-trasporto") == ["errore"], "X-Trasporto: errore",
                expected="errore", actual="; ".join(m.header_all("x-trasporto")) or "missing")
    ctx.verdict(("ANO-06", "FMT-18"), m.subject == PREFIX + original.subject, "subject 'ANOMALIA MESSAGGIO: '"
                " followed by the received subject", expected=PREFIX + original.subject, actual=m.subject)
    display, address = parseaddr(m.header("from") or "")
    named = display.split(":", 1)[1].strip().lower() if ":" in display else ""
    service = ctx.world.profile.service_address.lower()
    ctx.verdict("ANO-07", address.lower() == service and named in senders,
                "From: the target's service address, on behalf of the original sender", decision="D23",
                expected=f'"Per conto di: {" | ".join(sorted(senders))}" <{service}>', actual=m.header("from"))
    ctx.verdict("ANO-03", m.header("message-id") == original.header("message-id"),
                "the received Message-ID is inherited", expected=original.header("message-id"),
                actual=m.header("message-id"))
    reply_to = original.header("reply-to")
    got_reply = parseaddr(m.header("reply-to") or "")[1].lower()
    ctx.verdict(("ANO-08", "ANO-03"), m.header("reply-to") == reply_to if reply_to else got_reply in senders,
                "Reply-To kept, or inserted with the original sender when there was none", decision="D23",
                expected=reply_to or " | ".join(sorted(senders)), actual=m.header("reply-to") or "missing")
    parts = [c.content_type for c in (m.body.children if m.body is not None else [])]
    ctx.verdict("ANO-10", m.daticert_node is None and len(parts) == 2,
                "only the text and the received message: no daticert, no extra part",
                expected="text + message/rfc822", actual=", ".join(parts))
    v = m.signature.verification if m.signature is not None else None
    ctx.verdict(("ANO-12", "SIG-01"), v is not None and v.ok, "the anomaly envelope is signed by the target",
                actual="; ".join(v.errors) if v is not None else "not signed")
    try:
        lag = abs(parsedate_to_datetime(m.header("date")).timestamp() - sent_at)
    except (TypeError, ValueError):
        lag = None
    ctx.verdict("ANO-05", lag is not None and lag <= ctx.seconds(60), "Date: the arrival time of the message",
                expected="within 60 s of the SMTP transaction", actual=m.header("date"))
    _text_items(ctx, m, original, senders, got[0].evidence)
    return got[0]


def _text_items(ctx: ScenarioContext, m, original, senders: set[str], evidence: str) -> None:
    """ANO-09 beyond the date and subject the validator checks: the sender, the recipients, that the message
    was not certified and why, and that the original is attached."""
    text = " ".join((m.text_plain or m.text_html or "").split()).lower()
    recipients = [a.lower() for f in ("to", "cc") for _, a in getaddresses(original.header_all(f)) if a]
    missing = [f"sender ({' | '.join(sorted(senders))})"] if not any(a in text for a in senders) else []
    missing += [f"recipient {a}" for a in recipients if a not in text]
    missing += ["that the data were not certified, and why"] if "certificat" not in text else []
    missing += ["that the original is attached"] if "allegat" not in text else []
    ctx.verdict("ANO-09", not missing, "the anomaly text names sender and recipients, says the message was not "
                "certified and why, and that the original is attached", expected="all of them",
                actual="missing: " + ", ".join(missing) if missing else "all present", evidence=evidence)


def _outcome(ctx: ScenarioContext, code: int, sent: bytes, *, senders: set[str], reqs,
             sent_at: float) -> Captured | None:
    """Accepted: an anomaly envelope is due; refused: correct only when the target declares it refuses
    ordinary mail (decision D15)."""
    policy = ctx.world.profile.capability("ordinary_mail")
    if 200 <= code < 300:
        anomaly = expect_anomaly(ctx, sent, senders=senders, reqs=reqs, sent_at=sent_at)
        if anomaly is not None and policy != "refuse":
            ctx.verdict("ANO-15", True, "forwarded in an anomaly envelope, as declared", decision="D15",
                        actual=f"SMTP {code}; ordinary_mail = {policy}")
        if policy == "refuse":
            ctx.info(("ANO-15", *reqs), "declared to refuse ordinary mail, but forwarded it in an anomaly envelope",
                     decision="D15")
        return anomaly
    ctx.verdict(("ANO-15", "ANO-01", *reqs), policy == "refuse" and 500 <= code < 600,
                "refused at SMTP level: correct only for a target that declares it refuses ordinary mail",
                decision="D15", expected="anomaly envelope" if policy != "refuse" else "SMTP 5xx refusal",
                actual=f"SMTP {code}; ordinary_mail = {policy}")
    return None


@scenario("anomaly.ordinary-mail", "Ordinary mail to a PEC mailbox",
          "An ordinary Internet address writes to a target user (plain SMTP): the target wraps it in a signed "
          "anomaly envelope (or refuses it at SMTP level, as declared, D15); nothing is certified and no receipt "
          "goes anywhere.",
          ["ANO-01", "ANO-02", "ANO-03", "ANO-04", "ANO-05", "ANO-06", "ANO-07", "ANO-08", "ANO-09", "ANO-10", "ANO-12",
           "ANO-13", "ANO-15", "RIC-15"], needs=("ordinary_mail",))
def ordinary_mail(ctx: ScenarioContext) -> None:
    sender = ctx.outsider(0)
    raw = forge.ordinary(sender, ctx.user(0), f"[{ctx.token}] Posta ordinaria",
                         message_id=f"<{ctx.token}.ordinaria@{sender.rpartition('@')[2]}>")
    sent_at = time.time()
    code = ctx.inject(raw, [ctx.user(0)], mail_from=sender, origin="ordinary", starttls=False, label="ordinary")
    if not 200 <= code < 300 and not pec_taken(ctx):
        raise Blocked(None, f"ordinary mail refused (SMTP {code}), and a correct envelope was not delivered either: "
                            "the refusal is not the ordinary-mail policy's")
    anomaly = _outcome(ctx, code, raw, senders={sender.lower()}, reqs=(), sent_at=sent_at)
    ctx.info("RIC-15", f"ordinary mail offered to the incoming point: SMTP {code}, "
                       f"{'an anomaly envelope' if anomaly else 'no anomaly envelope'} for the user")
    if anomaly is None:
        ctx.info(("ANO-13", "CON-03"), "not applicable: no anomaly envelope was made for the message")
        return
    delivered = ctx.mailbox(0, [k for k in Kind if k is not Kind.BUSTA_ANOMALIA])
    ctx.verdict("ANO-01", not delivered, "ordinary mail never reaches the user as certified mail",
                actual=", ".join(str(c.message.kind) for c in delivered) or "nothing else")
    nothing_back(ctx, ("ANO-13", "CON-03"), "no presa in carico and no consegna for the anomaly", allowed=())
    outside = [r for r in list(ctx.world.ordinary.received) if ctx.token.encode() in r.raw]
    ctx.verdict("ANO-13", not outside, "nothing is sent back to the ordinary sender's domain",
                actual=f"{len(outside)} message(s)")


# ------------------------------------------------------------------------------------------------
# Envelopes that fail the signature tests (existence, origin, validity)


CONTROL = "[controllo]"


def pec_taken(ctx: ScenarioContext, index: int = 0) -> bool:
    """A positive control: a correct envelope from the counterpart reaches the user as certified mail."""
    good, t = forge.envelope(ctx.world.counterpart_credentials,
                             ctx.original(ctx.user(index), sender=ctx.peer(0), subject=f"Busta corretta {CONTROL}"))
    code = ctx.inject(good, [ctx.user(index)], mail_from=t.mittente, label="envelope-control")
    return 200 <= code < 300 and bool(ctx.wait_mailbox(index, Kind.BUSTA_TRASPORTO, within=15,
                                                       where=lambda c: CONTROL in c.message.subject))


def _not_control(item) -> bool:
    return CONTROL not in item.message.subject


def _forged(ctx: ScenarioContext, make, reqs: tuple[str, ...]) -> None:
    creds = ctx.world.counterpart_credentials
    rcpt = ctx.user(0)
    if not pec_taken(ctx):  # the positive control: the same envelope, correctly signed, is certified mail
        raise Blocked(None, "the same envelope correctly signed was not delivered as certified mail")
    raw, t = forge.envelope(creds, ctx.original(rcpt, sender=ctx.peer(0)))
    forged = make(raw)
    sent_at = time.time()
    code = ctx.inject(forged, [rcpt], mail_from=t.mittente, label="forged")
    senders = {creds.service_address.lower(), t.mittente.lower()}
    anomaly = _outcome(ctx, code, forged, senders=senders, reqs=(*reqs, "RIC-14"), sent_at=sent_at)
    if 400 <= code < 500:
        raise Blocked((*reqs, "RIC-14", "SIG-14", "RIC-03", *NOTHING_BACK), f"deferred (SMTP {code}), not judged: "
                      "a message not yet taken is not yet delivered either")
    as_pec = [c for c in ctx.mailbox(0, [Kind.BUSTA_TRASPORTO]) if _not_control(c)]
    ctx.verdict((*reqs, "RIC-14", "SIG-14", "RIC-03"), not as_pec, "the envelope that fails the signature tests is "
                "not delivered as certified mail (the correctly signed one was)", expected="no busta di trasporto",
                actual=f"{len(as_pec)} delivered")
    _nothing_back(ctx, anomaly, (*reqs, "RIC-14", "SIG-14", "RIC-03"))


def _nothing_back(ctx: ScenarioContext, anomaly: Captured | None, reqs: tuple[str, ...]) -> None:
    """No presa in carico and no consegna for it (the control's own acknowledgements aside). ANO-13 and CON-03
    are about anomaly envelopes: judged only when one was made."""
    reqs = (*reqs, *NOTHING_BACK) if anomaly is not None else reqs
    if anomaly is None:
        ctx.info(("ANO-13", "CON-03"), "not applicable: no anomaly envelope was made for the message")
    ctx.pause(ctx.seconds(QUIET))
    back = [r for r in ctx.counterpart_got() if _not_control(r)]
    for kind in {r.message.kind for r in back}:
        ctx.wait_counterpart(kind, count=0, within=0)  # captured as evidence, judged
    ctx.verdict(tuple(dict.fromkeys(reqs)), not back, "no presa in carico and no consegna for it", expected="nothing",
                actual=", ".join(f"{r.message.kind} to {', '.join(r.rcpts)}" for r in back) or "nothing")


def _key(ctx: ScenarioContext, name: str):
    material = ctx.world.forgery.get(name)
    if material is None:
        raise Skip(f"no '{name}' forgery key for the counterpart (see pki.write_forgery_material)")
    return material


_RIC = ["RIC-14", "SIG-14", "RIC-03", "ANO-01", "ANO-02", "ANO-09", "ANO-10", "ANO-13", "CON-03"]


@scenario("anomaly.unsigned", "An envelope without its signature",
          "The counterpart sends a correct envelope with its S/MIME layer removed: it is ordinary mail "
          "(existence test): an anomaly envelope for the user, no presa in carico, no consegna.",
          ["RIC-04", *_RIC])
def unsigned(ctx: ScenarioContext) -> None:
    _forged(ctx, forge.unsigned, ("RIC-04",))


@scenario("anomaly.bad-signature", "A corrupted signature value",
          "The counterpart's envelope carries a signature value that does not verify (validity test).",
          ["RIC-06", *_RIC])
def bad_signature(ctx: ScenarioContext) -> None:
    _forged(ctx, forge.bad_signature, ("RIC-06",))


@scenario("anomaly.tampered", "An envelope changed after signing",
          "One letter of the signed text of a correct envelope changed after signing (validity test).",
          ["RIC-06", *_RIC])
def tampered(ctx: ScenarioContext) -> None:
    _forged(ctx, forge.tampered, ("RIC-06",))


@scenario("anomaly.unknown-signer", "Signed by a key outside the providers index",
          "A correct envelope signed by a certificate of another CA, not in the index (origin test).",
          ["RIC-05", "IDX-10", *_RIC])
def unknown_signer(ctx: ScenarioContext) -> None:
    key, cert = _key(ctx, "foreign")
    _forged(ctx, lambda raw: forge.signed_by(raw, key, cert), ("RIC-05", "IDX-10"))


@scenario("anomaly.expired-certificate", "Signed with an expired certificate",
          "A correct envelope signed by the counterpart's expired certificate, listed in the index (validity).",
          ["RIC-06", *_RIC])
def expired(ctx: ScenarioContext) -> None:
    key, cert = _key(ctx, "expired")
    _forged(ctx, lambda raw: forge.signed_by(raw, key, cert), ("RIC-06",))


@scenario("anomaly.revoked-certificate", "Signed with a revoked certificate",
          "A correct envelope signed by a counterpart certificate the CRL (loaded before the run) revokes.",
          ["RIC-06", *_RIC])
def revoked(ctx: ScenarioContext) -> None:
    key, cert = _key(ctx, "revoked")
    _forged(ctx, lambda raw: forge.signed_by(raw, key, cert), ("RIC-06",))


@scenario("anomaly.revoked-during-run", "A certificate revoked during the run",
          "The counterpart signs a correct envelope with a certificate the index lists: it is delivered as "
          "certified mail. The suite then revokes that certificate in the CRL the target loads; after the target's "
          "declared CRL refresh interval, an envelope signed with it is no longer certified mail: an anomaly "
          "envelope (or an SMTP refusal), never a busta di trasporto.",
          ["RIC-07", "RIC-06"], needs=("crl_refresh",), timers=True)
def revoked_during_run(ctx: ScenarioContext) -> None:
    revoke = getattr(ctx.world, "revoke_certificate", None)
    if revoke is None:
        raise Skip("the suite cannot publish the CRL this target loads")
    key, cert = _key(ctx, "to-revoke")
    creds, rcpt = ctx.world.counterpart_credentials, ctx.user(0)

    def send(label: str, subject: str) -> int:
        raw, t = forge.envelope(creds, ctx.original(rcpt, sender=ctx.peer(0), subject=subject))
        return ctx.inject(forge.signed_by(raw, key, cert), [rcpt], mail_from=t.mittente, label=label)

    code = send("before-revocation", f"Prima della revoca {CONTROL}")
    if not (200 <= code < 300 and ctx.wait_mailbox(0, Kind.BUSTA_TRASPORTO, within=15,
                                                   where=lambda c: CONTROL in c.message.subject)):
        raise Blocked(None, f"an envelope signed with the certificate before its revocation was not delivered as "
                            f"certified mail (SMTP {code})")
    revoke(cert)
    refresh = float(ctx.world.profile.capability("crl_refresh"))
    ctx.pause(ctx.seconds(refresh) + max(2.0, ctx.seconds(refresh) / 10))  # a margin for the reload to run
    code = send("after-revocation", "Dopo la revoca")
    end = ctx.deadline(15)
    while not (arrived := [c for c in ctx.mailbox(0) if _not_control(c)]) and 200 <= code < 300 \
            and time.monotonic() < end:
        ctx.pause(0.1)
    as_pec = [c for c in arrived if c.message.kind is Kind.BUSTA_TRASPORTO]
    anomaly = [c for c in arrived if c.message.kind is Kind.BUSTA_ANOMALIA]
    seen = f"SMTP {code}; " + (", ".join(str(c.message.kind) for c in arrived) or "nothing delivered")
    if as_pec or anomaly or 500 <= code < 600:
        ctx.verdict(("RIC-07", "RIC-06"), not as_pec, f"signed after the revocation, {refresh:g} s (the declared CRL "
                    "refresh) later: no longer certified mail", expected="anomaly envelope or SMTP refusal",
                    actual=seen)
    else:
        ctx.blocked("RIC-07", f"after the revocation the envelope was neither delivered nor refused ({seen})")


@scenario("anomaly.not-yet-valid", "Signed with a certificate not yet valid",
          "A correct envelope signed by a counterpart certificate whose validity starts in the future.",
          ["RIC-06", *_RIC])
def not_yet_valid(ctx: ScenarioContext) -> None:
    key, cert = _key(ctx, "not-yet-valid")
    _forged(ctx, lambda raw: forge.signed_by(raw, key, cert), ("RIC-06",))


# ------------------------------------------------------------------------------------------------
# Signed by a provider, but not a correct envelope


def without_daticert(envelope: bytes, key, certificate) -> bytes:
    """The envelope with its daticert.xml part removed, signed again: a valid signature over a message
    that is not a correct envelope (RIC-08)."""
    inner = split_signed(walk_entity(envelope)).content + CRLF
    node = walk_entity(inner)
    head, _ = split_entity(inner)
    boundary = node.headers.get_boundary().encode()
    kept = [c.raw for c in node.children if b"daticert.xml" not in c.raw[:600].lower()]
    body = b"".join(b"--" + boundary + CRLF + part + CRLF for part in kept) + b"--" + boundary + b"--" + CRLF
    fields = [(n, re.sub(r"\r?\n[ \t]", " ", str(v)).strip()) for n, v in walk_entity(envelope).headers.items()
              if n.lower() not in ("mime-version", "content-type")]
    return sign_entity(fields, head + body, key, certificate)


@scenario("anomaly.malformed-signed", "Signed by a provider but not a correct envelope",
          "The counterpart validly signs an envelope whose daticert.xml was removed: the target must propagate "
          "it to the user in an anomaly envelope, whatever its ordinary-mail policy, and acknowledge nothing.",
          ["ANO-14", "RIC-08", "RIC-03", "ANO-01", "ANO-02", "ANO-09", "ANO-10", "ANO-13", "CON-03"])
def malformed_signed(ctx: ScenarioContext) -> None:
    creds = ctx.world.counterpart_credentials
    rcpt = ctx.user(0)
    raw, t = forge.envelope(creds, ctx.original(rcpt, sender=ctx.peer(0)))
    broken = without_daticert(raw, creds.key, creds.certificate)
    sent_at = time.time()
    code = ctx.inject(broken, [rcpt], mail_from=t.mittente, label="malformed")
    ctx.verdict(("ANO-14", "RIC-08"), 200 <= code < 300, "a message signed by a provider is accepted for "
                "propagation", expected="250", actual=str(code))
    anomaly = None
    if 200 <= code < 300:
        anomaly = expect_anomaly(ctx, broken, senders={creds.service_address.lower(), t.mittente.lower()},
                                 reqs=("ANO-14", "RIC-08"), sent_at=sent_at)
    else:
        raise Blocked(("RIC-08", "RIC-03", "ANO-13", "CON-03"), f"not taken (SMTP {code}): what the target does with "
                      "it cannot be seen")
    as_pec = [c for c in ctx.mailbox(0, [Kind.BUSTA_TRASPORTO]) if _not_control(c)]
    ctx.verdict(("RIC-08", "RIC-03"), not as_pec, "the malformed envelope is not delivered as certified mail",
                actual=f"{len(as_pec)} delivered")
    _nothing_back(ctx, anomaly, ("RIC-08",))

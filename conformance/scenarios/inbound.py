"""The target as the recipient's provider: envelopes from the counterpart reach the target's users and
the target's delivery point answers (CON-10, CON-14..16, CON-18, CON-21, NOT-03, VIR-15, IDX-12)."""

from __future__ import annotations

import time

from ..checks.findings import ValidationContext
from ..checks.validator import check
from ..counterpart import forge
from ..engine.core import Blocked, ScenarioContext, scenario
from ..pec import cms
from ..pec.constants import Kind
from ..pec.mime import attachment_part, b64_body, contains, entity, multipart, text_part
from ..pec.parse import parse_message
from ..pec.samples import EICAR
from ..pec.smime import sign_entity
from .anomaly import pec_taken


def _send_envelope(ctx: ScenarioContext, original: bytes, rcpts: list[str], *, key=None, cert=None) -> bytes:
    """Wrap a counterpart user's original in an envelope (signed by the counterpart, or by key/cert) and
    hand it to the target's incoming point; returns the envelope."""
    creds = ctx.world.counterpart_credentials
    env, _ = forge.envelope(creds, original)
    if key is not None:
        env = forge.signed_by(env, key, cert)
    code = ctx.inject(env, rcpts, mail_from=ctx.peer(0), label="envelope")
    ctx.verdict("RIC-09", 200 <= code < 300, "the target's incoming point accepts the envelope",
                expected="250", actual=str(code))
    return env


def _judge_with_original(ctx: ScenarioContext, cap, envelope: bytes, kind: Kind) -> None:
    """Judge a receipt against the original its envelope carried (complete copy, brief hashes)."""
    v = ctx.world.validation
    carried = parse_message(envelope).postacert
    result = check(cap.raw, ValidationContext(index=v.index, ca_certificates=v.ca_certificates, crls=v.crls,
                                              expected_kind=kind, carried_original=carried))
    for f in result.findings:
        if f.check.startswith(("receipts.", "structure.original")):
            f.evidence = cap.evidence  # type: ignore[attr-defined]
            ctx.findings.append(f)


def _forwarded_mail(ctx: ScenarioContext) -> bytes:
    return (f"From: {ctx.outsider(0)}\r\nTo: {ctx.peer(0)}\r\nSubject: messaggio inoltrato\r\n"
            f"Message-ID: <fw.{ctx.token}@esterno.test>\r\n\r\nTesto del messaggio inoltrato.\r\n").encode()


@scenario("inbound.brief-attached-message", "Brief receipt for an original carrying an e-mail",
          "A counterpart user sends a target user a message with a forwarded e-mail attached, asking for a "
          "brief receipt; the receipt replaces the attached message as a whole by its hash.",
          ["CON-14", "CON-12", "CON-13", "CON-11"])
def brief_attached(ctx: ScenarioContext) -> None:
    original = ctx.original(ctx.user(0), sender=ctx.peer(0), tipo="breve")
    original = forge.add_attachment(original, "message/rfc822", "inoltro.eml", _forwarded_mail(ctx))
    env = _send_envelope(ctx, original, [ctx.user(0)])
    receipts = ctx.wait_counterpart(Kind.CONSEGNA_BREVE)
    ctx.verdict("CON-11", len(receipts) == 1, "a brief receipt comes back", actual=str(len(receipts)))
    if receipts:
        _judge_with_original(ctx, receipts[0], env, Kind.CONSEGNA_BREVE)


def _user_signed_original(ctx: ScenarioContext) -> bytes:
    """A user's own S/MIME multipart/signed message with an attachment (signed with the counterpart key,
    standing for any user certificate)."""
    creds = ctx.world.counterpart_credentials
    inner = multipart("mixed", [text_part("Documento firmato.\r\n", "plain", "iso-8859-1"),
                                attachment_part("application/pdf", "firmato.pdf", b"%PDF-1.4 firmato\n" * 30,
                                                disposition="attachment")])
    fields = [("From", ctx.peer(0)), ("To", ctx.user(0)), ("Subject", f"[{ctx.token}] firmato"),
              ("Message-ID", f"<signed.{ctx.token}@pec.controparte.test>"), ("X-TipoRicevuta", "breve")]
    return sign_entity(fields, inner, creds.key, creds.certificate)


@scenario("inbound.brief-signed-original", "Brief receipt for a user-signed original",
          "The counterpart user's message is itself S/MIME multipart/signed; the brief receipt keeps the "
          "structure and the signature part, hashing the attachment inside the signed part.",
          ["CON-15", "CON-12", "CON-13"])
def brief_signed(ctx: ScenarioContext) -> None:
    env = _send_envelope(ctx, _user_signed_original(ctx), [ctx.user(0)])
    receipts = ctx.wait_counterpart(Kind.CONSEGNA_BREVE)
    ctx.verdict("CON-15", len(receipts) == 1, "a brief receipt comes back", actual=str(len(receipts)))
    if receipts:
        _judge_with_original(ctx, receipts[0], env, Kind.CONSEGNA_BREVE)


@scenario("inbound.brief-opaque-original", "Brief receipt for an opaque-signed original",
          "The counterpart user's message is application/pkcs7-mime (opaque signature); asking for a brief "
          "receipt, the target leaves it intact: the brief receipt equals a complete one.", ["CON-16"])
def brief_opaque(ctx: ScenarioContext) -> None:
    creds = ctx.world.counterpart_credentials
    content = b"Content-Type: text/plain\r\n\r\nContenuto firmato in forma opaca.\r\n"
    p7m = cms.sign_attached(content, creds.key, creds.certificate)
    original = entity([("From", ctx.peer(0)), ("To", ctx.user(0)), ("Subject", f"[{ctx.token}] opaco"),
                       ("Message-ID", f"<opaque.{ctx.token}@pec.controparte.test>"), ("X-TipoRicevuta", "breve"),
                       ("MIME-Version", "1.0"),
                       ("Content-Type", 'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"'),
                       ("Content-Transfer-Encoding", "base64"),
                       ("Content-Disposition", 'attachment; filename="smime.p7m"')], b64_body(p7m))
    env = _send_envelope(ctx, original, [ctx.user(0)])
    receipts = ctx.wait_counterpart(Kind.CONSEGNA_BREVE, within=10)  # brief asked: either label is right
    receipts += ctx.wait_counterpart(Kind.CONSEGNA_COMPLETA, within=0.5 if receipts else 5)
    ctx.verdict("CON-16", len(receipts) == 1, "one receipt with the original intact comes back",
                actual=", ".join(str(r.message.kind) for r in receipts) or "none")
    if receipts:
        carried = parse_message(env).postacert or b""
        inside = receipts[0].message.postacert or b""
        ctx.verdict("CON-16", inside.rstrip(b"\r\n") == carried.rstrip(b"\r\n"),
                    "the opaque original is carried unchanged", expected=f"{len(carried)} bytes",
                    actual=f"{len(inside)} bytes")


@scenario("inbound.ambiguous-recipient", "A recipient To/Cc cannot classify",
          "The envelope reaches a target user named in both To and Cc, in completa mode: To/Cc cannot tell "
          "primary from copy, so the user counts as primary and gets a complete receipt.", ["CON-10", "CON-08"])
def ambiguous(ctx: ScenarioContext) -> None:
    original = ctx.original(ctx.user(0), cc=ctx.user(0), sender=ctx.peer(0), tipo="completa")
    env = _send_envelope(ctx, original, [ctx.user(0)])
    receipts = [c for c in ctx.wait_counterpart(Kind.CONSEGNA_COMPLETA)]
    concise = ctx.counterpart_got(Kind.CONSEGNA_SINTETICA)
    ctx.verdict("CON-10", len(receipts) == 1 and not concise, "a complete receipt for the unclassified recipient",
                decision="D28", expected="consegna-completa", actual=f"{len(receipts)} completa, {len(concise)} sintetica")
    if receipts:
        _judge_with_original(ctx, receipts[0], env, Kind.CONSEGNA_COMPLETA)


@scenario("inbound.full-mailbox", "Mailbox over quota",
          "The counterpart sends an envelope to a target mailbox that is full; the target answers with an "
          "avviso di mancata consegna whose errore-esteso carries the code 5.2.2.",
          ["NOT-03", "CON-18", "CON-20"], needs=("full_mailbox",))
def full_mailbox(ctx: ScenarioContext) -> None:
    full = str(ctx.world.profile.capability("full_mailbox"))
    _send_envelope(ctx, ctx.original(full, sender=ctx.peer(0), tipo="sintetica"), [full])
    notices = ctx.wait_counterpart(Kind.MANCATA_CONSEGNA)
    ctx.verdict("CON-18", len(notices) == 1, "an avviso di mancata consegna comes back", actual=str(len(notices)))
    code = (notices[0].message.daticert.errore_esteso or "") if notices and notices[0].message.daticert else ""
    ctx.verdict("NOT-03", code.startswith("5.2.2"), "the mailbox-full code 5.2.2", soft=True, decision="D18",
                expected="5.2.2 - <gestore> - casella piena", actual=code or "none")


@scenario("inbound.ordinary-unknown-mailbox", "Ordinary mail for an unknown mailbox",
          "Ordinary mail for a mailbox the target does not have fails at SMTP level (or silently): never "
          "with a PEC non-delivery notice; the same mail to an existing mailbox reaches it in an anomaly "
          "envelope.", ["CON-21", "RIC-02"], needs=("ordinary_mail",))
def ordinary_unknown(ctx: ScenarioContext) -> None:
    target_domain = ctx.user(0).rpartition("@")[2]
    if ctx.world.profile.capability("ordinary_mail") == "refuse":
        ctx.info(("CON-21", "RIC-02"), "not applicable: the target declares it refuses all ordinary mail")
        return
    known = forge.ordinary(ctx.outsider(1), ctx.user(0), f"[{ctx.token}] ordinaria [controllo]")
    code = ctx.inject(known, [ctx.user(0)], mail_from=ctx.outsider(1), origin="ordinary", starttls=False,
                      label="ordinary-known")
    delivered = ctx.wait_mailbox(0, Kind.BUSTA_ANOMALIA, within=15, where=lambda c: "[controllo]" in c.message.subject) \
        if 200 <= code < 300 else []
    if not delivered:
        raise Blocked(None, f"ordinary mail to an existing mailbox did not reach it either (SMTP {code}, no "
                            "anomaly envelope)")
    raw = forge.ordinary(ctx.outsider(1), f"nessuno.{ctx.token}@{target_domain}", f"[{ctx.token}] ordinaria")
    code = ctx.inject(raw, [f"nessuno.{ctx.token}@{target_domain}"], mail_from=ctx.outsider(1), origin="ordinary",
                      starttls=False)
    ctx.verdict("RIC-02", code >= 500 if code else None, "the failure is told with an SMTP reply", soft=True,
                expected="5xx", actual=str(code))
    ctx.pause(ctx.seconds(2.0))
    pec = [r for r in ctx.world.ordinary.received
           if ctx.token.encode() in r.raw and r.message.kind not in (Kind.ORDINARY, Kind.UNKNOWN)]
    ctx.verdict("CON-21", not any(r.message.kind is Kind.MANCATA_CONSEGNA for r in pec),
                f"no PEC non-delivery notice for ordinary mail (SMTP {code})",
                actual=", ".join(str(r.message.kind) for r in pec) or "none")


@scenario("inbound.infected-receipt", "A receipt carrying a virus",
          "The counterpart sends a target user a correctly signed complete receipt whose attached original "
          "carries the EICAR test string: it is not forwarded to the user in any form; the same receipt with a "
          "clean original is.", ["VIR-15"])
def infected_receipt(ctx: ScenarioContext) -> None:
    creds = ctx.world.counterpart_credentials

    def receipt(attachment: bytes, subject: str) -> bytes:
        env, _ = forge.envelope(creds, ctx.original(ctx.peer(0), attachment=attachment, subject=subject))
        return forge.consegna(creds, parse_message(env), ctx.peer(0), "completa")

    clean = receipt(b"Documento di prova.\r\n", "Ricevuta pulita [controllo]")
    code = ctx.inject(clean, [ctx.user(0)], mail_from=creds.service_address, label="clean-consegna")
    if not (200 <= code < 300 and ctx.wait_mailbox(0, Kind.CONSEGNA_COMPLETA, within=15)):
        raise Blocked(None, f"the same receipt with a clean original was not delivered (SMTP {code})")
    ctx.inject(receipt(EICAR, "Ricevuta infetta"), [ctx.user(0)], mail_from=creds.service_address,
               label="infected-consegna")
    ctx.quiet_mailbox(0, Kind.CONSEGNA_COMPLETA, during=2.0)
    got = [c for c in ctx.mailbox(0) if contains(c.raw, EICAR, max_depth=4)]
    ctx.verdict("VIR-15", not got, "an infected receipt reaches the user in no form (as it is, or wrapped)",
                actual=", ".join(str(c.message.kind) for c in got) or "nothing infected delivered")


@scenario("inbound.renewed-certificate", "Envelope signed with the provider's renewed certificate",
          "The counterpart's index record lists two certificates (a renewal); an envelope signed with the "
          "second one is accepted as PEC: delivered, with presa in carico and consegna.",
          ["IDX-12", "RIC-05"])
def renewed(ctx: ScenarioContext) -> None:
    if "renewed" not in ctx.world.forgery:
        from ..engine.core import Skip

        raise Skip("no renewed certificate in the counterpart's index")
    key, cert = ctx.world.forgery["renewed"]
    _send_envelope(ctx, ctx.original(ctx.user(0), sender=ctx.peer(0), tipo="sintetica"), [ctx.user(0)],
                   key=key, cert=cert)
    delivered = ctx.wait_mailbox(0, Kind.BUSTA_TRASPORTO)
    receipts = ctx.wait_counterpart(Kind.CONSEGNA_SINTETICA)
    anomalies = ctx.mailbox(0, [Kind.BUSTA_ANOMALIA])
    ctx.verdict(("IDX-12", "RIC-05"), len(delivered) == 1 and len(receipts) == 1 and not anomalies,
                "an envelope signed with the second listed certificate is accepted as PEC",
                expected="delivered + consegna", actual=f"{len(delivered)} delivered, {len(receipts)} consegna, "
                                                        f"{len(anomalies)} anomaly")


@scenario("inbound.anomaly-routing", "An anomaly envelope keeps the routing data",
          "Ordinary mail whose reverse path (a bounce address) differs from its From, with no Reply-To, reaches a "
          "target user inside an anomaly envelope (the declared ordinary-mail policy) that travels with the "
          "original reverse path, so a DSN still finds the sender, and adds a Reply-To to the sender.",
          ["ANO-11", "ANO-15", "ANO-08", "ANO-03"], needs=("ordinary_mail",))
def anomaly_routing(ctx: ScenarioContext) -> None:
    policy = ctx.world.profile.capability("ordinary_mail")
    sender = ctx.outsider(0)
    bounce = f"rimbalzi-{ctx.token}@{sender.rpartition('@')[2]}"
    raw = forge.ordinary(sender, ctx.user(0), f"[{ctx.token}] ordinaria")
    code = ctx.inject(raw, [ctx.user(0)], mail_from=bounce, origin="ordinary", starttls=False)
    if policy == "refuse":
        if not 200 <= code < 300 and not pec_taken(ctx):
            raise Blocked(None, f"ordinary mail refused (SMTP {code}), and a correct envelope was not delivered "
                                "either: the refusal is not the ordinary-mail policy's")
        ctx.verdict("ANO-15", 500 <= code < 600, "ordinary mail refused as declared (decision D15)", actual=str(code))
        ctx.info("ANO-11", "not applicable: the target refuses ordinary mail, no anomaly envelope to route")
        return
    found = ctx.wait_mailbox(0, Kind.BUSTA_ANOMALIA)
    ctx.verdict("ANO-15", len(found) == 1, "ordinary mail forwarded in an anomaly envelope, as declared",
                decision="D15", actual=f"SMTP {code}; {len(found)} anomaly envelope(s)")
    if not found:
        raise Blocked(("ANO-11", "ANO-08"), "no anomaly envelope reached the user")
    m = found[0].message
    # The Return-Path on top is the one the delivery wrote from the reverse path the envelope travelled with.
    paths = m.header_all("return-path")
    ctx.verdict("ANO-11", bool(paths) and paths[0].strip("<> ").lower() == bounce,
                "routing data kept: the anomaly envelope travels with the original reverse path",
                expected=f"Return-Path: <{bounce}>", actual="; ".join(paths) or "no Return-Path")
    ctx.verdict("ANO-08", (m.header("reply-to") or "").strip("<> ").endswith(sender),
                "a Reply-To to the original sender is inserted", decision="D23", expected=sender,
                actual=m.header("reply-to") or "missing")


@scenario("inbound.cc-recipient", "The target's Cc recipient gets a concise receipt",
          "A counterpart user sends two target users, one in To and one in Cc, asking for complete receipts; "
          "the target returns a complete receipt for the To recipient and a concise one for the Cc recipient.",
          ["CON-09", "CON-08", "CON-06", "MUL-05"])
def cc_recipient(ctx: ScenarioContext) -> None:
    to, cc = ctx.user(0), ctx.user(1)
    env = _send_envelope(ctx, ctx.original(to, cc=cc, sender=ctx.peer(0), tipo="completa"), [to, cc])
    complete = ctx.wait_counterpart(Kind.CONSEGNA_COMPLETA)
    concise = ctx.wait_counterpart(Kind.CONSEGNA_SINTETICA)
    names = {str(c.message.kind): (c.message.daticert.consegna or "").lower() for c in complete + concise
             if c.message.daticert}
    ctx.verdict(("CON-09", "MUL-05"), names.get("consegna-sintetica") == cc and len(concise) == 1,
                "the Cc recipient's receipt is concise", decision="D5", expected=f"sintetica for {cc}",
                actual=", ".join(f"{k} for {v}" for k, v in names.items()) or "none")
    ctx.verdict(("CON-08", "CON-06"), names.get("consegna-completa") == to and len(complete) == 1,
                "the To recipient's receipt is complete", expected=f"completa for {to}",
                actual=", ".join(f"{k} for {v}" for k, v in names.items()) or "none")
    if complete:
        _judge_with_original(ctx, complete[0], env, Kind.CONSEGNA_COMPLETA)


@scenario("inbound.receipt-variants", "Brief and concise receipts the target makes",
          "A counterpart user sends a target user (To) and another (Cc) two envelopes, one asking for brief "
          "receipts, one for concise ones: for the first the target returns a brief receipt for the To recipient "
          "and a concise one for the Cc recipient, for the second concise receipts for both, each declaring "
          "the variant asked for.", ["CON-11", "CON-17", "MUL-05", "CON-09"])
def receipt_variants(ctx: ScenarioContext) -> None:
    to, cc = ctx.user(0), ctx.user(1)
    asked = {}
    for tipo in ("breve", "sintetica"):
        original = ctx.original(to, cc=cc, sender=ctx.peer(0), tipo=tipo, subject=f"ricevuta {tipo}")
        env = _send_envelope(ctx, original, [to, cc])
        if "RIC-09" in {r for f in ctx.findings if str(f.verdict) == "FAIL" for r in f.requirements}:
            raise Blocked(None, "the target refused a correct envelope")
        asked[parse_message(env).daticert.identificativo] = tipo
    kinds = (Kind.CONSEGNA_COMPLETA, Kind.CONSEGNA_BREVE, Kind.CONSEGNA_SINTETICA)
    end = ctx.deadline(20)
    while sum(len(ctx.counterpart_got(k)) for k in kinds) < 4 and time.monotonic() < end:
        ctx.pause(0.1)
    caps = [c for k in kinds for c in ctx.wait_counterpart(k, count=0, within=0)]
    if not caps:
        raise Blocked(None, "the target returned no delivery receipt for either envelope")
    for ident, tipo in asked.items():
        mine = {(c.message.daticert.consegna or "").lower(): c for c in caps
                if c.message.daticert and c.message.daticert.identificativo == ident}
        for rcpt in (to, cc):
            want = Kind.CONSEGNA_BREVE if tipo == "breve" and rcpt == to else Kind.CONSEGNA_SINTETICA
            if tipo == "breve":
                reqs = ("CON-11", "MUL-05") if rcpt == to else ("CON-11", "CON-09", "MUL-05")
            else:
                reqs = ("CON-17", "MUL-05")
            cap = mine.get(rcpt)
            ctx.verdict(reqs, cap is not None and cap.message.kind is want,
                        f"{tipo} asked: {rcpt} ({'To' if rcpt == to else 'Cc'}) gets a {want}", expected=str(want),
                        actual=str(cap.message.kind) if cap else "no receipt",
                        evidence=cap.evidence if cap else None)
            d = cap.message.daticert if cap is not None else None
            if d is not None and (rcpt == to or tipo == "sintetica"):  # Cc of a breve request: either (D5)
                ctx.verdict(reqs[:1], d.ricevuta in (None, tipo), f"{rcpt}'s receipt declares the variant asked",
                            expected=f"ricevuta tipo={tipo}", actual=f"ricevuta tipo={d.ricevuta}",
                            evidence=cap.evidence)

"""Secure transport (SEC-02..04, ACC-02) and the carried original (ENV-12): the access point is a
submission service that wants TLS before AUTH; the incoming point announces STARTTLS and still takes
plain sessions (ordinary mail); the target's envelopes reach the counterpart over TLS, carrying the
original exactly as submitted but for the identifier handling.

Not here: Bcc leaks (acceptance.bcc-refused and the validator's headers.bcc check every PEC message)."""

from __future__ import annotations

import base64
import smtplib

from ..engine.core import HarnessError, ScenarioContext, named_causes, scenario
from ..net.smtp import BoundedSMTP, BoundedSMTP_SSL
from ..pec.build import rewrite_original
from ..pec.constants import H_RIFERIMENTO, Kind
from ..pec.mime import split_entity
from ..pec.parse import parse_message

_TRACE = ("received", "return-path")


class _Probe:
    """An SMTP client session that keeps a transcript (evidence); a real password only over TLS, never recorded."""

    def __init__(self, ctx: ScenarioContext, where: tuple[str, int], label: str, *, implicit: bool = False):
        self.ctx, self.label, self.lines = ctx, label, [f"connect {where[0]}:{where[1]}"]
        cls = BoundedSMTP_SSL if implicit else BoundedSMTP  # deadlines and reply caps: the target may be hostile
        kwargs = {"context": ctx.world.client_tls} if implicit else {}
        try:
            # A socket deadline with a floor: a small --timeout-multiplier scales waits for receipts, not a
            # TLS handshake on a loaded machine.
            self.smtp = cls(where[0], where[1], timeout=max(5.0, ctx.seconds(15)), **kwargs)
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise HarnessError(f"{label}: cannot connect to {where[0]}:{where[1]}: {exc}") from None

    def cmd(self, line: str, shown: str | None = None) -> tuple[int, str]:
        name, _, arg = line.partition(" ")
        self.lines.append(f"C: {shown or line}")
        try:
            if name == "EHLO":
                code, text = self.smtp.ehlo(arg or "conformance.test")
            elif name == "STARTTLS":
                code, text = self.smtp.starttls(context=self.ctx.world.client_tls)
            else:
                code, text = self.smtp.docmd(name, arg)
        except smtplib.SMTPServerDisconnected as exc:
            code, text = 0, f"disconnected: {exc}".encode()
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise HarnessError(f"{self.label}: {line.split()[0]} failed: {exc}") from None
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        self.lines.append(f"S: {code} {text}".replace("\n", "\\n"))
        return code, text

    def has(self, extension: str) -> bool:
        return self.smtp.has_extn(extension)

    def close(self) -> None:
        smtp = getattr(self, "smtp", None)
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        self.ctx.evidence_paths.append(self.ctx.world.evidence.transcript(self.ctx.spec.id, self.label, self.lines))


@scenario("transport.starttls-access", "The access point wants TLS before AUTH",
          "A client connects to the access point in clear: STARTTLS is offered, AUTH (tried with a dummy "
          "credential, never a real password) and mail are refused before it with a permanent error naming "
          "the encryption or the authentication; after STARTTLS, AUTH is offered and the user's own login and a "
          "mail transaction are accepted (the positive control).",
          ["SEC-02", "ACC-02", "SEC-07"])
def starttls_access(ctx: ScenarioContext) -> None:
    p = ctx.world.profile
    if p.access_tls == "implicit":
        probe = _Probe(ctx, p.access, "access-implicit-tls", implicit=True)
        try:
            probe.cmd("EHLO conformance.test")
            ctx.verdict(("SEC-02", "ACC-02"), probe.has("auth"), "implicit TLS submission offering AUTH",
                        expected="AUTH after the TLS handshake", actual="AUTH" if probe.has("auth") else "no AUTH")
        finally:
            probe.close()
        return
    probe = _Probe(ctx, p.access, "access-plain")
    try:
        probe.cmd("EHLO conformance.test")
        offers, auth_in_clear = probe.has("starttls"), probe.has("auth")
        ctx.verdict(("SEC-02", "ACC-02"), offers, "the submission service announces STARTTLS",
                    expected="250-STARTTLS", actual="announced" if offers else "not announced")
        ctx.info("SEC-02", f"AUTH {'announced' if auth_in_clear else 'not announced'} before TLS")
        dummy = base64.b64encode(b"\0probe@conformance.invalid\0not-a-password").decode()
        auth_code, auth_text = probe.cmd(f"AUTH PLAIN {dummy}", "AUTH PLAIN <dummy credential>")
        if auth_code == 334:
            probe.cmd("*")
        mail_code, mail_text = probe.cmd(f"MAIL FROM:<{ctx.user(0)}>")
        probe.cmd("RSET")
        control = _control_after_tls(ctx, probe) if offers else "STARTTLS not offered"
    finally:
        probe.close()
    if control is not None:
        ctx.blocked(("SEC-02", "SEC-07"), f"no positive control: {control}; the refusals in clear prove nothing")
        return
    # Before TLS the credential must not even be looked at: 530/538 (encryption required), or AUTH not
    # available at all (502-504) when it was not announced. 2xx/334 takes a login in clear; 535 checked it.
    if auth_code in (530, 538) or (auth_code in (502, 503, 504) and not auth_in_clear):
        ctx.verdict("SEC-02", True, "AUTH is refused before TLS (not even checked against a password)",
                    expected="530/538 encryption required", actual=f"{auth_code} {auth_text}")
    elif auth_code < 400 or auth_code == 535:
        ctx.verdict("SEC-02", False, "AUTH is refused before TLS (not even checked against a password)",
                    expected="530/538 encryption required", actual=f"{auth_code} {auth_text}")
    else:
        ctx.blocked("SEC-02", f"AUTH before TLS answered {auth_code} {auth_text[:80]}: a refusal for another cause")
    if mail_code >= 500 and "tls" in named_causes(mail_text):
        ctx.verdict(("SEC-02", "SEC-07"), True, "no mail transaction over a plain channel", decision="D30",
                    expected="5xx naming the encryption", actual=f"{mail_code} {mail_text}")
    elif mail_code >= 500:
        # e.g. "530 authentication required": refused for the missing login, which is not tried in clear here
        ctx.blocked(("SEC-02", "SEC-07"), f"MAIL FROM in clear answered {mail_code} {mail_text[:80]}: a refusal that "
                                          "does not name the unencrypted channel")
    elif mail_code < 400:
        ctx.verdict(("SEC-02", "SEC-07"), False, "no mail transaction over a plain channel", decision="D30",
                    expected="5xx", actual=f"{mail_code} {mail_text}")
    else:
        ctx.blocked(("SEC-02", "SEC-07"), f"MAIL FROM in clear answered {mail_code} {mail_text[:80]}: deferred, "
                                          "not refused")


def _control_after_tls(ctx: ScenarioContext, probe: _Probe) -> str | None:
    """STARTTLS, then AUTH with the user's own login and a MAIL FROM: both accepted, or what failed."""
    code, text = probe.cmd("STARTTLS")
    ctx.verdict("SEC-02", code == 220, "STARTTLS succeeds", expected="220", actual=f"{code} {text}")
    if code != 220:
        return f"STARTTLS answered {code}"
    probe.cmd("EHLO conformance.test")
    ctx.verdict("ACC-02", probe.has("auth"), "after STARTTLS the submission service offers AUTH",
                expected="250-AUTH", actual="announced" if probe.has("auth") else "not announced")
    box = ctx.world.profile.mailboxes[0]
    secret = box.secret()
    if secret is None:
        return f"no password for {box.address}"
    login = base64.b64encode(f"\0{box.login}\0{secret}".encode()).decode()
    code, text = probe.cmd(f"AUTH PLAIN {login}", "AUTH PLAIN <the user's credential, over TLS>")
    if code != 235:
        return f"AUTH over TLS answered {code} {text[:80]}"
    code, text = probe.cmd(f"MAIL FROM:<{box.address}>")
    probe.cmd("RSET")
    return None if code == 250 else f"MAIL FROM after TLS and AUTH answered {code} {text[:80]}"


def _session(ctx: ScenarioContext, probe: _Probe, what: str) -> None:
    code, text = probe.cmd(f"MAIL FROM:<{ctx.outsider(0)}>")
    rcode, rtext = probe.cmd(f"RCPT TO:<{ctx.user(0)}>")
    ctx.verdict("SEC-04", code == 250 and rcode in (250, 251), f"the incoming point takes a {what} session",
                expected="250 to MAIL and RCPT", actual=f"MAIL {code} {text}; RCPT {rcode} {rtext}")
    probe.cmd("RSET")


@scenario("transport.starttls-incoming", "The incoming point offers STARTTLS and takes plain SMTP",
          "A sender connects to the incoming point: STARTTLS is announced; a plain session (as ordinary mail "
          "arrives) and a protected one are both taken up to RCPT (no message is left behind).",
          ["SEC-04", "SEC-01", "RIC-15"])
def starttls_incoming(ctx: ScenarioContext) -> None:
    probe = _Probe(ctx, ctx.world.profile.incoming, "incoming-plain")
    try:
        probe.cmd("EHLO conformance.test")
        offers = probe.has("starttls")
        ctx.verdict(("SEC-04", "SEC-01"), offers, "the incoming point announces STARTTLS",
                    expected="250-STARTTLS", actual="announced" if offers else "not announced")
        _session(ctx, probe, "plain")
        ctx.info("RIC-15", "a plain session from an ordinary domain, as Internet mail arrives, offered to the "
                           "incoming point (SEC-04 tells how it went)")
        if offers:
            code, text = probe.cmd("STARTTLS")
            ctx.verdict("SEC-04", code == 220, "STARTTLS succeeds", expected="220", actual=f"{code} {text}")
            if code == 220:
                probe.cmd("EHLO conformance.test")
                _session(ctx, probe, "TLS-protected")
    finally:
        probe.close()


def _headers(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Header fields but trace, Message-ID and X-Riferimento-Message-ID (as a sorted list), and the body."""
    head, body = split_entity(raw)
    msg = parse_message(head + b"\r\n")
    skip = (*_TRACE, "message-id", H_RIFERIMENTO.lower())
    fields = sorted((n.lower(), " ".join(str(v).split())) for n, v in (msg.headers.items() if msg.headers else [])
                    if n.lower() not in skip)
    return fields, body


@scenario("transport.peer-tls", "Envelopes travel between providers over TLS",
          "A user writes to a counterpart mailbox: the envelope reaches the counterpart over STARTTLS, with the "
          "routing data unchanged and the submitted original inside, changed only in its identifiers.",
          ["SEC-03", "SEC-01", "ENV-12", "ENV-14", "ACC-16"])
def peer_tls(ctx: ScenarioContext) -> None:
    raw = ctx.original(ctx.peer(0), tipo="sintetica")
    out = ctx.submit(raw, [ctx.peer(0)])
    ctx.verdict("SEC-03", out.accepted, "submission accepted", actual=f"{out.code} {out.text}")
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO)
    records = ctx.counterpart_got(Kind.BUSTA_TRASPORTO)
    ctx.verdict("SEC-03", len(envelopes) == 1, "one envelope reaches the counterpart", actual=str(len(envelopes)))
    if not envelopes or not records:
        return
    rec, env = records[0], envelopes[0].message
    ctx.verdict(("SEC-03", "SEC-01"), rec.tls, "the envelope travels over TLS (STARTTLS) between providers",
                expected="STARTTLS", actual="TLS" if rec.tls else "plain SMTP")
    ctx.verdict("ENV-14", rec.mail_from.lower() == ctx.user(0) and [r.lower() for r in rec.rcpts] == [ctx.peer(0)],
                "routing data unchanged", expected=f"{ctx.user(0)} -> {ctx.peer(0)}",
                actual=f"{rec.mail_from} -> {', '.join(rec.rcpts)}")
    carried, d = env.postacert, env.daticert
    if carried is None or d is None:
        ctx.verdict("ENV-12", False, "no carried original or daticert to compare with the submission",
                    actual=f"postacert {'present' if carried else 'missing'}, daticert "
                           f"{'present' if d else 'missing'}")
        return
    client_msgid = parse_message(raw).header("message-id")
    expected = rewrite_original(raw, d.identificativo.strip("<>"), client_msgid)
    if carried == expected:
        ctx.verdict("ENV-12", True, "the carried original is the submission with its identifiers rewritten")
        return
    (want_fields, want_body), (got_fields, got_body) = _headers(expected), _headers(carried)
    ctx.verdict("ENV-12", want_body == got_body and want_fields == got_fields,
                "the carried original is the submission, bar identifiers, trace fields and field order",
                expected=f"body of {len(want_body)} bytes, {len(want_fields)} fields as submitted",
                actual=f"body of {len(got_body)} bytes ({'same' if want_body == got_body else 'different'}), "
                       f"fields {'same' if want_fields == got_fields else 'different'}")

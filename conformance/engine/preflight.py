"""Preflight: before the scenarios, check what the run needs of the target.

Each endpoint answers, the access point offers STARTTLS, AUTH works for each mailbox, each mailbox
opens, and one correct message from a target user reaches the counterpart. What fails is an ERROR
naming the endpoint, the mailbox and the server's reply (a refused or lost correct message is one
ACC-17 FAIL); it closes the matching gate in `world.gates`, so the scenarios that need it are BLOCKED
instead of failing, one by one, for a reason that is not theirs.
"""

from __future__ import annotations

import smtplib
import time
from dataclasses import dataclass, field

from ..checks.findings import Finding, Verdict
from ..net.mailbox import MailboxError
from ..net.smtp import BoundedSMTP, BoundedSMTP_SSL
from .core import (
    Blocked,
    HarnessError,
    Interrupted,
    Scenario,
    ScenarioContext,
    ScenarioResult,
    TargetFailure,
    World,
)

PREFLIGHT = Scenario("preflight", "preflight", "Preflight: what the run needs of the target",
                     "Before the scenarios the suite checks that each endpoint answers, STARTTLS, AUTH for each "
                     "mailbox, that each mailbox opens, and that one correct message from a target user reaches "
                     "the counterpart.", (), lambda ctx: None)


@dataclass
class PreflightResult:
    result: ScenarioResult
    lines: list[str] = field(default_factory=list)  # one line per check, for the console

    @property
    def ok(self) -> bool:
        return not any(str(f.verdict) in ("ERROR", "FAIL") for f in self.result.findings)


def _reply(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}".strip()
    return f"{type(exc).__name__}: {exc}"


def _smtp(world: World, point: str, address: tuple[str, int], tls: str, *, login: str | None = None,
          secret: str | None = None, require_starttls: bool = True,
          envelope: tuple[str, str] | None = None, context=None) -> str | None:
    """Connect, EHLO, STARTTLS (or implicit TLS), optionally AUTH, optionally MAIL FROM / RCPT TO of
    `envelope` then RSET (no message is sent); None when all worked, else why not."""
    host, port = address
    where = f"{point} {host}:{port}"
    context = context or world.client_tls
    timeout = max(5.0, 15.0 * world.multiplier)
    try:
        if tls == "implicit":
            smtp: smtplib.SMTP = BoundedSMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = BoundedSMTP(host, port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return f"{where} does not answer: {_reply(exc)}"
    try:
        code, text = smtp.ehlo()
        if code != 250:
            return f"{where}: EHLO answered {code} {text.decode('utf-8', 'replace')[:200]}"
        if tls != "implicit" and (require_starttls or smtp.has_extn("starttls")):
            if not smtp.has_extn("starttls"):
                return f"{where} offers no STARTTLS (EHLO: {text.decode('utf-8', 'replace')[:200]})"
            try:
                smtp.starttls(context=context)
                smtp.ehlo()
            except (OSError, smtplib.SMTPException) as exc:
                return f"{where}: STARTTLS failed: {_reply(exc)}"
        if login is not None:
            try:
                smtp.login(login, secret or "")
            except (OSError, smtplib.SMTPException) as exc:
                return f"{where}: AUTH as {login!r} failed: {_reply(exc)}"
        if envelope is not None:
            sender, rcpt = envelope
            for cmd, arg in (("mail", f"FROM:<{sender}>"), ("rcpt", f"TO:<{rcpt}>")):
                code, reply = smtp.docmd(cmd, arg)
                reply_text = reply.decode("utf-8", "replace")[:200]
                if code in (530, 534, 535, 538, 454):
                    return f"{where} demands AUTH from other providers ({cmd.upper()} -> {code} {reply_text})"
                if code >= 400:
                    return f"{where} refuses {cmd.upper()} {arg} ({code} {reply_text})"
            smtp.rset()
        return None
    except (OSError, smtplib.SMTPException) as exc:
        return f"{where}: {_reply(exc)}"
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def run_preflight(world: World, *, within: float | None = None) -> PreflightResult:
    """Run the checks; close `world.gates` for what failed. `within`: how long the correct message may
    take to reach the counterpart (scaled by the timeout multiplier; default 60 s, 20 s for the built-in)."""
    p = world.profile
    gates = world.gates
    ctx = ScenarioContext(world, PREFLIGHT)
    lines: list[str] = []
    wall = time.time()

    def error(message: str, *, evidence: str | None = None) -> None:
        f = Finding((), Verdict.ERROR, f"preflight: {message}", check="preflight")
        f.evidence = evidence  # type: ignore[attr-defined]
        ctx.findings.append(f)
        lines.append(f"ERROR {message}")

    def fine(message: str) -> None:
        lines.append(f"ok    {message}")

    # 1. The access point answers, with STARTTLS; AUTH for each mailbox.
    problem = _smtp(world, "access point", p.access, p.access_tls)
    if problem:
        gates.submit = problem
        error(problem)
    else:
        fine(f"access point {p.access[0]}:{p.access[1]} answers ({p.access_tls})")
        for i, box in enumerate(p.mailboxes):
            secret = box.secret()
            if secret is None:
                why = f"mailbox {box.address}: no password (set {box.password_env or 'password_env in the profile'})"
            else:
                why = _smtp(world, "access point", p.access, p.access_tls, login=box.login, secret=secret)
                why = why and f"mailbox {box.address}: {why}"
            if why:
                gates.submit_user[i] = why
                error(why)
            else:
                fine(f"mailbox {box.address}: AUTH as {box.login!r}")

    # 2. The incoming point answers (STARTTLS there is judged by the scenarios, not required here).
    # As a peer provider would: STARTTLS when offered, no AUTH, a recipient among the target's mailboxes.
    problem = _smtp(world, "incoming point", p.incoming, "starttls", require_starttls=False,
                    envelope=(world.counterpart_users[0], p.mailboxes[0].address) if p.mailboxes else None,
                    context=getattr(world.counterpart, "client_tls", None))
    if problem:
        gates.incoming = problem
        error(problem)
    else:
        fine(f"incoming point {p.incoming[0]}:{p.incoming[1]} answers")

    # 3. Each mailbox opens.
    for i, box in enumerate(p.mailboxes):
        try:
            reader = ctx._reader(i)
            reader.close()
            fine(f"mailbox {box.address} opens ({box.url.split('://')[0]})")
        except (MailboxError, OSError) as exc:
            why = f"mailbox {box.address} ({box.url.split('://')[0]}) does not open: {exc}"
            gates.mailbox[i] = why
            error(why)

    # 4. One correct message from a target user reaches the counterpart.
    sender = next((i for i in range(len(p.mailboxes)) if i not in gates.submit_user), None)
    if gates.submit is None and sender is not None:
        _clean_message(ctx, world, sender, within, error, lines)
    elif gates.submit is None:
        gates.submit = "no mailbox could log in at the access point"

    result = ScenarioResult(PREFLIGHT, "INFO", ctx.findings, ctx.events, ctx.evidence_paths, wall,
                            time.monotonic() - ctx.started, None)
    if ctx.findings:
        result.verdict = "FAIL" if any(str(f.verdict) == "FAIL" for f in ctx.findings) else "ERROR"
        result.error = "; ".join(f.message for f in ctx.findings if str(f.verdict) == "ERROR") or None
    return PreflightResult(result, lines)


def _clean_message(ctx: ScenarioContext, world: World, user: int, within: float | None, error,
                   lines: list[str]) -> None:
    box = world.profile.mailboxes[user]
    peer = ctx.peer(0)
    raw = ctx.original(peer, sender=box.address, subject="Verifica preliminare")
    try:
        out = ctx.submit(raw, [peer], user=user, label="preflight")
    except (HarnessError, TargetFailure, Blocked, Interrupted) as exc:
        world.gates.submit = f"a correct message from {box.address} could not be submitted: {exc}"
        error(world.gates.submit)
        return
    if out.auth_failure:
        world.gates.submit = f"mailbox {box.address}: the access point refused the login ({out})"
        error(world.gates.submit, evidence=out.evidence)
        return
    if not out.accepted:
        how = "deferred" if 400 <= out.code < 500 else "refused"
        world.gates.submit = f"a correct message from {box.address} to {peer} was {how} ({out})"
        ctx.verdict("ACC-17", False, f"preflight: {world.gates.submit}", expected="250, then a transport envelope",
                    actual=str(out), evidence=out.evidence)
        ctx.findings[-1].check = "preflight"
        lines.append(f"FAIL  ACC-17: {world.gates.submit}")
        return
    wait = within if within is not None else (20.0 if world.profile.kind == "reference" else 60.0)
    end = ctx.deadline(wait)
    while not ctx.counterpart_got(None) and time.monotonic() < end:
        ctx.pause(0.1)
    got = ctx.counterpart_got(None)
    if not got:
        world.gates.submit = (f"a correct message from {box.address} to {peer} was accepted ({out}) but nothing "
                              f"reached the counterpart within {ctx.seconds(wait):.0f} s")
        ctx.verdict("ACC-17", False, f"preflight: {world.gates.submit}", expected="a transport envelope at the "
                    "counterpart", actual="none", evidence=out.evidence)
        ctx.findings[-1].check = "preflight"
        lines.append(f"FAIL  ACC-17: {world.gates.submit}")
        return
    lines.append(f"ok    a correct message from {box.address} reached the counterpart ({got[0].message.kind})")

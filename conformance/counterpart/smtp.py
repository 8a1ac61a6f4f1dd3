"""SMTP plumbing shared by the counterpart and the ordinary-mail domain: a recording server (aiosmtpd
Controller, STARTTLS offered, plain accepted) and a client that never raises and keeps a transcript.

The server writes evidence through the owner's hook before it answers `250`; if the hook fails the
answer is `451`, so the sender keeps the message and tries again.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from ..net.ports import free_port
from ..net.smtp import BoundedSMTP
from ..pec.constants import MAX_MESSAGE_BYTES
from ..pec.parse import ParsedMessage, parse_message

Evidence = Callable[[str, bytes, dict], None]
# What the target may send the counterpart or the ordinary domain: the validator's message bound (larger is
# refused with 552 and discarded as it arrives, so a hostile target cannot fill memory through them).
DATA_SIZE_LIMIT = MAX_MESSAGE_BYTES
# Messages taken in at once by one server; a further sender waits for its 354, so a target opening many
# connections cannot multiply the memory a message may take.
PARALLEL_DATA = 4


@dataclass
class Received:
    """One SMTP transaction the counterpart (or an ordinary domain) accepted."""

    at: float
    mail_from: str
    rcpts: list[str]
    raw: bytes
    message: ParsedMessage
    tls: bool
    peer: str
    origin: object | None = None  # conformance.pec.verify.OriginCheck, when the receiver verified it
    behaviour: str | None = None  # what the counterpart did with it ("recorded" when not an envelope for it)

    @property
    def verified(self) -> bool:
        return bool(getattr(self.origin, "verified", False))


@dataclass
class SmtpOutcome:
    """The result of one SMTP transaction as a client: the final reply (code 0: no reply, a network or TLS
    failure, told in `text`), whether the session ran over TLS, and the commands and replies exchanged."""

    code: int
    text: str
    tls: bool
    transcript: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def _reply(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return f"S: {code} {text}".replace("\n", "\\n")


def smtp_send(host: str, port: int, mail_from: str, rcpts: list[str], raw: bytes, *, starttls: bool = True,
              client_tls: ssl.SSLContext | None = None, helo: str = "localhost", timeout: float = 30) -> SmtpOutcome:
    """One SMTP transaction. With `starttls`, the session is upgraded or nothing is sent (a server that
    offers no STARTTLS gives code 0). Never raises on network, TLS or protocol errors."""
    out = SmtpOutcome(0, "", False)
    t = out.transcript
    smtp = BoundedSMTP(timeout=timeout, local_hostname=helo)  # deadlines and reply caps: the target may be hostile
    try:
        t.append(f"connect {host}:{port}")
        smtp._host = host  # what starttls() passes as server_hostname (set only by the constructor otherwise)
        code, msg = smtp.connect(host, port)
        t.append(_reply(code, msg))
        if code != 220:
            out.code, out.text = code, msg.decode("utf-8", "replace")
            return out
        t.append(f"C: EHLO {helo}")
        code, msg = smtp.ehlo()
        t.append(_reply(code, msg))
        if starttls:
            if not smtp.has_extn("starttls"):
                out.text = "the server offers no STARTTLS; nothing sent in clear"
                t.append(f"! {out.text}")
                return out
            t.append("C: STARTTLS")
            code, msg = smtp.starttls(context=client_tls or client_context())
            t.append(_reply(code, msg))
            out.tls = True
            t.append(f"C: EHLO {helo}")
            code, msg = smtp.ehlo()
            t.append(_reply(code, msg))
        t.append(f"C: MAIL FROM:<{mail_from}>")
        code, msg = smtp.mail(mail_from)
        t.append(_reply(code, msg))
        if code != 250:
            out.code, out.text = code, msg.decode("utf-8", "replace")
            _quiet_rset(smtp)
            return out
        accepted = []
        for rcpt in rcpts:
            t.append(f"C: RCPT TO:<{rcpt}>")
            code, msg = smtp.rcpt(rcpt)
            t.append(_reply(code, msg))
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                out.refused[rcpt] = (code, msg.decode("utf-8", "replace"))
        if not accepted:
            out.code, out.text = code, msg.decode("utf-8", "replace")
            _quiet_rset(smtp)
            return out
        t.append("C: DATA")
        t.append(f"C: <message of {len(raw)} bytes>")
        try:
            code, msg = smtp.data(raw)
        except smtplib.SMTPDataError as exc:
            code, msg = exc.smtp_code, exc.smtp_error
        t.append(_reply(code, msg))
        out.code, out.text = code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        try:
            t.append("C: QUIT")
            code, msg = smtp.quit()
            t.append(_reply(code, msg))
        except (OSError, smtplib.SMTPException):
            pass
        return out
    except smtplib.SMTPResponseException as exc:
        out.code, out.text = exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
        t.append(_reply(exc.smtp_code, exc.smtp_error))
        return out
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        out.code, out.text = 0, f"{type(exc).__name__}: {exc}"
        t.append(f"! {out.text}")
        return out
    finally:
        smtp.close()


def _quiet_rset(smtp: smtplib.SMTP) -> None:
    try:
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        pass


def client_context(ca_pem: str | None = None) -> ssl.SSLContext:
    """TLS client context: the system roots plus `ca_pem`; host names are not checked (loopback test
    deployments are reached by IP address), the chain is."""
    ctx = ssl.create_default_context()
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    ctx.check_hostname = False
    return ctx


class Recorder:
    """An SMTP server that accepts mail for some domains and hands each transaction to `accept`, which
    returns the SMTP reply; `received` and `wait` are shared by the counterpart and the ordinary sink."""

    def __init__(self, *, domains: tuple[str, ...], tls_context: ssl.SSLContext | None, evidence: Evidence | None,
                 host: str, port: int, ident: str, point: str):
        self.domains = tuple(d.lower() for d in domains)
        self.tls_context = tls_context
        self.evidence = evidence
        self.host = host
        self.port = port
        self.ident = ident
        self.point = point
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None

    # ------------------------------------------------------------------ server
    @property
    def address(self) -> tuple[str, int]:
        if self._controller is None:
            raise RuntimeError("not started")
        return (self.host, self.port)

    def start_server(self) -> None:
        if self._controller is not None:
            return
        self.port = self.port or free_port(self.host)
        self._controller = _Controller(_Handler(self), hostname=self.host, port=self.port,
                                      tls_context=self.tls_context, require_starttls=False,
                                      data_size_limit=DATA_SIZE_LIMIT, ident=self.ident,
                                      server_hostname=self.domains[0] if self.domains else None)
        self._controller.start()

    def stop_server(self) -> None:
        if self._controller is not None:
            try:
                self._controller.stop()
            except Exception as exc:  # already stopped, loop closed
                self.errors.append(f"stopping the server: {exc!r}")
            self._controller = None

    def rcpt_reply(self, address: str) -> str | None:
        """A reply other than 250 for this recipient (a subclass's behaviour), or None."""
        return None

    def accepts(self, address: str) -> bool:
        return not self.domains or address.rpartition("@")[2].lower() in self.domains

    def record(self, mail_from: str, rcpts: list[str], raw: bytes, tls: bool, peer: str) -> tuple[str, Received | None]:
        """Evidence first, then the record; the reply to give."""
        meta = {"point": self.point, "mail_from": mail_from, "rcpts": list(rcpts), "tls": tls, "peer": peer,
                "at": time.time()}
        if self.evidence is not None:
            try:
                self.evidence("in", raw, meta)
            except Exception as exc:
                self.errors.append(f"evidence hook: {exc!r}")
                return "451 4.3.0 cannot store the message now, try again later", None
        item = Received(at=meta["at"], mail_from=mail_from, rcpts=list(rcpts), raw=raw, message=parse_message(raw),
                        tls=tls, peer=peer)
        return "250 2.0.0 OK", item

    def append(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def accept(self, mail_from: str, rcpts: list[str], raw: bytes, tls: bool, peer: str) -> str:
        reply, item = self.record(mail_from, rcpts, raw, tls, peer)
        if item is not None:
            item.behaviour = "recorded"
            self.append(item)
        return reply

    # ------------------------------------------------------------------ waiting
    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        with self._cond:
            items = list(self.received)
        return [r for r in items if predicate(r)]

    def wait(self, predicate: Callable[[Received], bool], deadline: float) -> Received | None:
        """The first received transaction for which `predicate` holds, waiting until `deadline`
        (an absolute time.monotonic() value); None when none came in time."""
        seen = 0
        while True:
            with self._cond:
                items = self.received[seen:]
                seen = len(self.received)
            for item in items:
                if predicate(item):
                    return item
            with self._cond:
                if len(self.received) > seen:
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.25))


class _SlottedSMTP(SMTP):
    """aiosmtpd's server session, with DATA taken only while one of the server's slots is free."""

    slots: asyncio.Semaphore

    async def smtp_DATA(self, arg: str) -> None:
        async with self.slots:
            await super().smtp_DATA(arg)


class _Controller(Controller):
    """A Controller whose sessions share PARALLEL_DATA slots for DATA."""

    _slots: asyncio.Semaphore | None = None

    def factory(self) -> SMTP:
        if self._slots is None:  # made in the server's loop, the first time a peer connects
            self._slots = asyncio.Semaphore(PARALLEL_DATA)
        session = _SlottedSMTP(self.handler, **self.SMTP_kwargs)
        session.slots = self._slots
        return session


class _Handler:
    def __init__(self, owner: Recorder):
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not self.owner.accepts(address):
            return "550 5.7.1 relay not permitted"
        special = self.owner.rcpt_reply(address)
        if special is not None:
            return special
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        loop = asyncio.get_running_loop()
        peer = str(session.peer[0]) if session.peer else ""
        tls = session.ssl is not None
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        try:
            return await loop.run_in_executor(None, self.owner.accept, envelope.mail_from or "",
                                              list(envelope.rcpt_tos), content, tls, peer)
        except Exception as exc:  # never let one message take the server down
            self.owner.errors.append(f"receiving: {exc!r}")
            return "451 4.3.0 temporary failure, try again later"

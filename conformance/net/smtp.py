"""The SMTP client the suite talks to targets with: smtplib, bounded.

`BoundedSMTP` and `BoundedSMTP_SSL` are smtplib's clients with a :class:`~conformance.net.bounds.Guard`:
a deadline on every exchange (each command and its reply, the greeting, the message and its reply)
and on the whole session, and a cap on each reply line and on a whole multi-line reply. Replies are
scrubbed of known passwords (:mod:`conformance.redact`) as they are read, so an echo never reaches a
transcript, an exception or a report. The caller's `timeout` stays the per-read timeout; the deadlines
derive from it (:data:`~conformance.net.bounds.EXCHANGE_FACTOR`, :data:`~conformance.net.bounds.SESSION_FACTOR`).
"""

from __future__ import annotations

import smtplib
import socket

from .. import redact
from .bounds import SMTP_LINE_BYTES, SMTP_REPLY_BYTES, BoundExceeded, Guard

__all__ = ["BoundExceeded", "BoundedSMTP", "BoundedSMTP_SSL"]


class _Bounded:
    """Mixed in before smtplib.SMTP / SMTP_SSL (the guard must exist before their constructor connects)."""

    sock: object
    file: object

    def __init__(self, host: str = "", port: int = 0, *args, timeout: float = 30.0,
                 exchange_seconds: float | None = None, session_seconds: float | None = None, **kwargs) -> None:
        self.guard = Guard(f"SMTP {host}:{port}" if host else "SMTP", timeout=timeout, exchange_bytes=SMTP_REPLY_BYTES,
                           exchange_seconds=exchange_seconds, session_seconds=session_seconds)
        try:
            super().__init__(host, port, *args, timeout=timeout, **kwargs)
        except BaseException:
            self.guard.close()
            raise

    def connect(self, host: str = "localhost", port: int = 0, source_address=None):
        self.guard.what = f"SMTP {host}:{port}"
        self.guard.begin_exchange()  # the greeting is the first exchange
        return super().connect(host, port, source_address)

    def _get_socket(self, host: str, port: int, timeout: float):
        plain = socket.create_connection((host, port), timeout, self.source_address)
        self.guard.attach(plain)
        if isinstance(self, smtplib.SMTP_SSL):
            return self.context.wrap_socket(plain, server_hostname=self._host)
        return plain

    def send(self, s) -> None:
        self.guard.begin_exchange()
        try:
            super().send(s)
        except smtplib.SMTPServerDisconnected:
            self.guard.check()
            raise

    def _cut(self, reason: str) -> BoundExceeded:
        self.close()
        return BoundExceeded(reason)

    def getreply(self) -> tuple[int, bytes]:
        """One reply (all its lines), each line and the whole reply capped, the text scrubbed."""
        if self.file is None:
            self.file = self.sock.makefile("rb")
        texts: list[bytes] = []
        size = 0
        while True:
            try:
                line = self.file.readline(SMTP_LINE_BYTES + 1)
            except OSError as exc:
                if self.guard.expired:
                    raise self._cut(self.guard.describe()) from None
                self.close()
                raise smtplib.SMTPServerDisconnected(f"connection lost while reading a reply: {exc}") from None
            if self.guard.expired:  # whatever came after the cut (nothing, half a line) is not a reply
                raise self._cut(self.guard.describe())
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("connection closed while reading a reply")
            if len(line) > SMTP_LINE_BYTES:
                raise self._cut(f"{self.guard.what}: a reply line longer than {SMTP_LINE_BYTES} bytes")
            size += len(line)
            if size > SMTP_REPLY_BYTES:
                raise self._cut(f"{self.guard.what}: a reply longer than {SMTP_REPLY_BYTES} bytes "
                                f"({len(texts) + 1} lines and counting)")
            texts.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1  # not a reply: smtplib's callers treat -1 as a failed command
                break
            if line[3:4] != b"-":
                break
        text = b"\n".join(texts)
        return code, redact.scrub_bytes(text)

    def login(self, user: str, password: str, *, initial_response_ok: bool = True):
        redact.register(password, user)  # whatever the server echoes of it is scrubbed from here on
        return super().login(user, password, initial_response_ok=initial_response_ok)

    def close(self) -> None:
        super().close()
        if getattr(self, "guard", None) is not None and self.sock is None:
            self.guard.close()


class BoundedSMTP(_Bounded, smtplib.SMTP):
    pass


class BoundedSMTP_SSL(_Bounded, smtplib.SMTP_SSL):
    pass

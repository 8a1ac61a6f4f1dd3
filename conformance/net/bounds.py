"""Bounds no target can break: a size cap on everything read from it, a deadline on every exchange and
on the whole session.

A per-read socket timeout alone does not bound a session: a server that sends one byte just before
each timeout keeps a read going for ever. A :class:`Guard` arms a timer for the current exchange (one
command and its answer) capped by the session's deadline; when it fires the connection is shut down
(through a duplicate of the socket taken when it was opened, so it works before, during and after a
TLS handshake), which wakes any blocked read or write, and the client reports a :class:`BoundExceeded`. Byte budgets are
charged by the clients as they read, so an endless multi-line reply or a literal announced at 2 GiB
stops at the cap instead of filling memory.

The caps derive from the documented message bound (``MAX_MESSAGE_BYTES``, 64 MiB): a message read from a
mailbox may be that large, one exchange may carry it plus its protocol framing, and everything else
(a reply, a line) is far smaller.
"""

from __future__ import annotations

import socket
import threading
import time

from ..pec.constants import MAX_MESSAGE_BYTES

# Exchange and session deadlines as multiples of the per-read timeout the caller chose (already scaled
# by --timeout-multiplier): 30 s reads give 2 minutes per exchange (a 64 MiB message on a slow link) and
# 5 minutes per session.
EXCHANGE_FACTOR = 4
SESSION_FACTOR = 10

MESSAGE_BYTES = MAX_MESSAGE_BYTES  # one message fetched from a mailbox
FRAMING_BYTES = 1 << 20  # protocol lines around it (FETCH, dot-stuffing, untagged answers)
EXCHANGE_BYTES = MESSAGE_BYTES + FRAMING_BYTES + MESSAGE_BYTES // 32  # RETR dot-stuffing may add a little
ANSWER_BYTES = 4 << 20  # any other answer from a mailbox server (a UID list, a login reply)
SMTP_LINE_BYTES = 8192  # one SMTP reply line (RFC 5321 asks for 512; servers are generous)
SMTP_REPLY_BYTES = 64 * 1024  # one whole multi-line SMTP reply (an EHLO answer is a few hundred bytes)


class BoundExceeded(OSError):
    """The target broke a size cap or a deadline; the session was cut. An OSError, so every caller that
    already turns network failures into an ERROR does so with this one too."""


class Guard:
    """The deadlines and byte budget of one session with a target.

    `attach(sock)` is called with the TCP socket as soon as it is connected; `begin_exchange()` before
    each command is sent, `charge(n)` for every n bytes read, `check()` after a read that failed or came
    back empty, `close()` when the session ends.
    """

    def __init__(self, what: str, *, timeout: float, exchange_bytes: int = EXCHANGE_BYTES, exchange_seconds: float | None = None,
                 session_seconds: float | None = None) -> None:
        self.what = what
        self.exchange_seconds = exchange_seconds if exchange_seconds is not None else EXCHANGE_FACTOR * timeout
        self.session_seconds = session_seconds if session_seconds is not None else SESSION_FACTOR * timeout
        self.session_end = time.monotonic() + self.session_seconds
        self.exchange_bytes = exchange_bytes
        self.budget = exchange_bytes
        self.used = 0
        self.expired: str | None = None  # "exchange" or "session" once a deadline fired
        self._held: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ deadlines
    def begin_exchange(self, budget: int | None = None) -> None:
        """A new exchange: its deadline armed, `budget` bytes (default: the session's) to read."""
        self.check()
        now = time.monotonic()
        if now >= self.session_end:
            self._fire("session")
            self.check()
        self.used = 0
        self.budget = budget if budget is not None else self.exchange_bytes
        exchange_end = now + self.exchange_seconds
        kind = "exchange" if exchange_end < self.session_end else "session"
        self._arm(min(exchange_end, self.session_end) - now, kind)

    def _arm(self, delay: float, kind: str) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._closed:
                return
            self._timer = threading.Timer(delay, self._fire, args=(kind,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, kind: str) -> None:
        with self._lock:
            if self._closed or self.expired:
                return
            self.expired = kind
            held = self._held
        if held is not None:
            try:
                held.shutdown(socket.SHUT_RDWR)  # wakes the blocked read or write; the client sees EOF
            except OSError:
                pass

    def attach(self, sock: socket.socket) -> None:
        """Keep a duplicate of the connection's socket: shutting it down cuts the connection whatever
        object (plain or TLS) the client reads through by then."""
        with self._lock:
            if self._held is not None:
                self._held.close()
            self._held = sock.dup()

    def describe(self) -> str:
        if self.expired == "session":
            return f"{self.what}: the session took longer than its {self.session_seconds:g} s deadline"
        return f"{self.what}: one exchange took longer than its {self.exchange_seconds:g} s deadline"

    def check(self) -> None:
        """Raise BoundExceeded when a deadline has fired (call it where a read failed or hit EOF)."""
        if self.expired:
            raise BoundExceeded(self.describe())

    # ------------------------------------------------------------------ bytes
    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.budget:
            raise BoundExceeded(f"{self.what}: one answer went past {self.budget} bytes")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._held is not None:
                self._held.close()  # the client closed its own socket; this releases the connection
                self._held = None

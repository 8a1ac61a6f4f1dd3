"""Mailbox readers: the suite reads a user's mailbox the way a mail client would, and never changes it.

Three ways in, one small interface (:class:`MailboxReader`):

- :class:`MaildirReader` reads ``new/`` and ``cur/`` of a Maildir on disk, without moving or flagging;
- :class:`ImapReader` uses ``EXAMINE`` (read-only SELECT) and ``UID FETCH BODY.PEEK[]``, so ``\\Seen``
  is never set;
- :class:`Pop3Reader` uses ``UIDL`` and ``RETR`` and never ``DELE`` (``RSET`` before ``QUIT``).

``raw`` is always the exact bytes the source gave: the file's bytes for a Maildir, the literal of
``BODY[]`` for IMAP, the dot-unstuffed lines of ``RETR`` with their line endings for POP3. IMAP and POP3
carry messages with CRLF line endings, so a server holding a bare-LF file hands it out as CRLF.

Only the standard library clients are used. Every socket has a timeout; the IMAP and POP3 readers
refuse to authenticate on a channel that is not encrypted (implicit TLS, or STARTTLS/STLS first);
the password is used to log in and then forgotten, and it never appears in an error message.
"""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from .. import redact
from .bounds import ANSWER_BYTES, MESSAGE_BYTES, BoundExceeded, Guard

__all__ = [
    "FetchedMessage",
    "ImapReader",
    "MailboxError",
    "MailboxReader",
    "MailboxUrl",
    "MaildirReader",
    "Pop3Reader",
    "open_mailbox",
    "parse_mailbox_url",
    "wait_for",
]

DEFAULT_PORTS = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
MAX_LISTED = 100_000  # messages in one test mailbox: far beyond any run, far below what memory allows
_POP3_MAX_LINE = 1 << 24  # poplib's own limit (2048) is too small for arbitrary mail; RETR is read here


class MailboxError(Exception):
    """A connection, TLS, login or protocol failure while reading a mailbox.

    The message names the protocol, host, port and step (``connect``, ``tls``, ``login``, ``select``,
    ``list``, ``fetch``, ...), never the password.
    """

    def __init__(self, message: str, *, protocol: str | None = None, host: str | None = None,
                 port: int | None = None, step: str | None = None) -> None:
        self.protocol, self.host, self.port, self.step = protocol, host, port, step
        message = redact.scrub_text(message)  # server text quoted in it may echo a password
        where = []
        if protocol:
            where.append(protocol)
        if host is not None:
            where.append(f"{host}:{port}" if port is not None else host)
        if step:
            where.append(f"({step})")
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class FetchedMessage:
    mailbox: str  # the account / folder it came from
    uid: str  # IMAP UID, POP3 UIDL, or Maildir key
    raw: bytes  # the exact bytes of the message


@runtime_checkable
class MailboxReader(Protocol):
    def list_uids(self) -> list[str]: ...

    def fetch(self, uid: str) -> FetchedMessage: ...

    def fetch_all(self) -> list[FetchedMessage]: ...

    def iter_all(self) -> Iterator[FetchedMessage]: ...

    def close(self) -> None: ...


def _scrub(text: str, secret: str | None) -> str:
    """A server's reply may echo what it was sent; make sure a secret never gets further, in any form."""
    if secret:
        redact.register(secret)
    return redact.scrub_text(text)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | ssl.SSLError) or type(exc) is OSError:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    text = str(exc)
    if text.startswith(("b'", 'b"')):  # imaplib and poplib pass server lines as bytes reprs
        text = text[2:-1]
    return text or type(exc).__name__


# --------------------------------------------------------------------------- Maildir


class MaildirReader:
    """Reads a Maildir's ``new/`` and ``cur/`` in place: no move to ``cur/``, no flag, no lock.

    The uid is the Maildir key (the file name up to the ``:2,`` info), which stays the same when
    a mail client or server later moves the file from ``new/`` to ``cur/`` or changes its flags.
    """

    def __init__(self, path: Path | str, account: str = "") -> None:
        self.path = Path(path)
        self.account = account or str(self.path)
        for sub in ("new", "cur"):
            if not (self.path / sub).is_dir():
                raise MailboxError(f"not a Maildir: {self.path} has no {sub}/ directory", protocol="maildir",
                                   step="open")

    def _scan(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(self.path / sub))
            except OSError as exc:
                raise MailboxError(f"cannot list {self.path / sub}: {_describe(exc)}", protocol="maildir",
                                   step="list") from exc
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                found.setdefault(entry.name.split(":", 1)[0], Path(entry.path))
        return found

    def list_uids(self) -> list[str]:
        return sorted(self._scan())

    def _read(self, uid: str, path: Path | None) -> bytes | None:
        for attempt in range(2):
            if path is not None:
                try:
                    with open(path, "rb") as f:
                        return f.read()
                except FileNotFoundError:
                    pass  # moved between new/ and cur/ (or re-flagged) since the scan: look again
                except OSError as exc:
                    raise MailboxError(f"cannot read {path}: {_describe(exc)}", protocol="maildir",
                                       step="fetch") from exc
            if attempt == 0:
                path = self._scan().get(uid)
        return None

    def fetch(self, uid: str) -> FetchedMessage:
        if not uid or "/" in uid or uid.startswith("."):
            raise MailboxError(f"not a Maildir key: {uid!r}", protocol="maildir", step="fetch")
        raw = self._read(uid, None)
        if raw is None:
            raise MailboxError(f"no message {uid!r} in {self.path}", protocol="maildir", step="fetch")
        return FetchedMessage(self.account, uid, raw)

    def fetch_all(self) -> list[FetchedMessage]:
        return list(self.iter_all())

    def iter_all(self) -> Iterator[FetchedMessage]:
        """One message at a time: a caller that keeps few of them never holds the whole mailbox."""
        for uid, path in sorted(self._scan().items()):
            raw = self._read(uid, path)
            if raw is not None:  # deleted since the scan: it is gone, skip it
                yield FetchedMessage(self.account, uid, raw)

    def close(self) -> None:
        pass

    def __enter__(self) -> MaildirReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- IMAP


def imap_utf7(name: str) -> str:
    """Encode a folder name in IMAP's modified UTF-7 (RFC 3501, 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append("&" + b64.decode("ascii") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _imap_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FETCH_UID = re.compile(rb"\bUID (\d+)\b")


class _BoundedImap:
    """imaplib, bounded (mixed in before IMAP4 / IMAP4_SSL): a deadline on every command and on the
    session, a cap on each answer, and no literal beyond the message bound is ever read."""

    def __init__(self, *args, guard: Guard, **kwargs) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)

    def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
        self.guard.begin_exchange()  # the greeting and the first CAPABILITY
        super().open(host, port, timeout)

    def _create_socket(self, timeout: float | None):
        plain = socket.create_connection((self.host or None, self.port), timeout)
        self.guard.attach(plain)
        if isinstance(self, imaplib.IMAP4_SSL):
            return self.ssl_context.wrap_socket(plain, server_hostname=self.host)
        return plain

    def send(self, data: bytes) -> None:
        # Only FETCH brings a message back; every other answer is small.
        self.guard.begin_exchange(None if b" FETCH " in data[:64].upper() else ANSWER_BYTES)
        try:
            super().send(data)
        except OSError:
            self.guard.check()
            raise

    def readline(self) -> bytes:
        try:
            line = super().readline()
        except OSError:
            self.guard.check()
            raise
        self.guard.check()  # a line cut short by the deadline is not the server's line
        self.guard.charge(len(line))
        return line

    def read(self, size: int) -> bytes:
        if size > MESSAGE_BYTES:  # refused on the announcement: nothing of it is read
            raise BoundExceeded(f"{self.guard.what}: the server announced a literal of {size} bytes, beyond "
                                f"the {MESSAGE_BYTES}-byte message bound")
        self.guard.charge(size)
        try:
            data = super().read(size)
        except OSError:
            self.guard.check()
            raise
        self.guard.check()
        return data

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            self.guard.close()


class _BoundedIMAP4(_BoundedImap, imaplib.IMAP4):
    pass


class _BoundedIMAP4_SSL(_BoundedImap, imaplib.IMAP4_SSL):
    pass


class _BoundedPop3:
    """poplib, bounded (mixed in before POP3 / POP3_SSL) like :class:`_BoundedImap`."""

    def __init__(self, *args, guard: Guard, **kwargs) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float):
        self.guard.begin_exchange()  # the greeting
        plain = socket.create_connection((self.host, self.port), timeout)
        self.guard.attach(plain)
        if isinstance(self, poplib.POP3_SSL):
            return self.context.wrap_socket(plain, server_hostname=self.host)
        return plain

    def _putline(self, line: bytes) -> None:
        self.guard.begin_exchange(None if line[:5].upper() == b"RETR " else ANSWER_BYTES)
        try:
            super()._putline(line)
        except OSError:
            self.guard.check()
            raise

    def _getline(self) -> tuple[bytes, int]:
        try:
            line, octets = super()._getline()
        except (OSError, poplib.error_proto):
            self.guard.check()
            raise
        self.guard.check()  # a line cut short by the deadline is not the server's line
        self.guard.charge(octets)
        return line, octets

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.guard.close()


class _BoundedPOP3(_BoundedPop3, poplib.POP3):
    pass


class _BoundedPOP3_SSL(_BoundedPop3, poplib.POP3_SSL):
    pass


class _RemoteReader:
    """What the IMAP and POP3 readers share: one connection, dropped without ceremony on a failure.
    Each protocol supplies `_where(step)` (how it names itself in errors) and `_drop(conn)`."""

    _conn = None

    def _abort(self) -> None:
        if self._conn is not None:
            try:
                self._drop(self._conn)
            except OSError:
                pass
            self._conn = None

    def _live(self, step: str):
        if self._conn is None:
            raise MailboxError("the reader is closed", **self._where(step))
        return self._conn


class ImapReader(_RemoteReader):
    """An IMAP mailbox opened read-only (``EXAMINE``); messages are read with ``BODY.PEEK[]``.

    ``tls="implicit"`` speaks TLS from the first byte (imaps); ``tls="starttls"`` requires the server
    to offer STARTTLS and upgrades before any credential is sent. Login uses ``AUTHENTICATE PLAIN``
    when offered (any character in the password), else ``LOGIN``.
    """

    protocol = "imap"

    def __init__(self, host: str, port: int, user: str, password: str, *,
                 tls: Literal["implicit", "starttls"], ssl_context: ssl.SSLContext | None,
                 timeout: float = 10.0, folder: str = "INBOX") -> None:
        if tls not in ("implicit", "starttls"):
            raise ValueError(f"tls must be 'implicit' or 'starttls', not {tls!r}")
        self.host, self.port, self.user, self.folder, self.tls = host, port, user, folder, tls
        self.timeout = timeout
        self.uidvalidity: str | None = None
        context = ssl_context or ssl.create_default_context()
        self._conn: imaplib.IMAP4 | None = None
        redact.register(password, user)
        guard = Guard(f"{self._where('')['protocol']} {host}:{port}", timeout=timeout)
        step = "connect"
        try:
            if tls == "implicit":
                self._conn = _BoundedIMAP4_SSL(host, port, ssl_context=context, timeout=timeout, guard=guard)
            else:
                self._conn = _BoundedIMAP4(host, port, timeout=timeout, guard=guard)
                step = "starttls"
                if "STARTTLS" not in self._conn.capabilities:
                    raise MailboxError("the server does not offer STARTTLS; refusing to log in over a "
                                       "plaintext connection", **self._where("starttls"))
                self._conn.starttls(ssl_context=context)
            step = "login"
            self._login(password)
            step = "select"
            typ, data = self._conn.select(_imap_quote(imap_utf7(folder)), readonly=True)
            if typ != "OK":
                raise MailboxError(f"cannot open folder {folder!r}: {_describe(Exception(data[0]))}",
                                   **self._where("select"))
            _, validity = self._conn.response("UIDVALIDITY")
            if validity and validity[0] is not None:
                self.uidvalidity = validity[0].decode("ascii", "replace")
        except MailboxError:
            self._abort()
            guard.close()
            raise
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            self._abort()
            guard.close()
            detail = _scrub(_describe(exc), password)
            if step == "login":
                raise MailboxError(f"login as {user!r} failed: {detail}", **self._where(step)) from None
            raise MailboxError(detail, **self._where(step)) from None

    def _where(self, step: str) -> dict:
        return {"protocol": "imaps" if self.tls == "implicit" else "imap+starttls", "host": self.host,
                "port": self.port, "step": step}

    def _login(self, password: str) -> None:
        conn = self._conn
        assert conn is not None
        if not isinstance(conn.sock, ssl.SSLSocket):  # belt and braces: never send credentials in clear
            raise MailboxError("the connection is not encrypted; refusing to log in", **self._where("login"))
        caps = conn.capabilities
        if "AUTH=PLAIN" in caps:
            creds = f"\0{self.user}\0{password}".encode()
            typ, data = conn.authenticate("PLAIN", lambda _challenge: creds)
        elif "LOGINDISABLED" in caps:
            raise MailboxError("the server offers neither AUTH=PLAIN nor LOGIN", **self._where("login"))
        else:
            try:
                typ, data = conn.login(self.user, password)
            except UnicodeError:
                raise MailboxError("the password is not ASCII and the server offers no AUTH=PLAIN",
                                   **self._where("login")) from None
        if typ != "OK":
            raise imaplib.IMAP4.error(data[0] if data else typ)

    def _drop(self, conn: imaplib.IMAP4) -> None:
        conn.shutdown()

    def list_uids(self) -> list[str]:
        conn = self._live("list")
        try:
            typ, data = conn.uid("SEARCH", "ALL")
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            raise MailboxError(_describe(exc), **self._where("list")) from exc
        if typ != "OK":
            raise MailboxError(f"UID SEARCH failed: {data!r}", **self._where("list"))
        uids: set[int] = set()
        for chunk in data:
            if isinstance(chunk, bytes):
                uids.update(int(u) for u in chunk.split() if u.isdigit())
            if len(uids) > MAX_LISTED:
                raise MailboxError(f"UID SEARCH lists more than {MAX_LISTED} messages", **self._where("list"))
        return [str(u) for u in sorted(uids)]

    def fetch(self, uid: str) -> FetchedMessage:
        if not uid.isdigit():
            raise MailboxError(f"not an IMAP UID: {uid!r}", **self._where("fetch"))
        conn = self._live("fetch")
        try:
            typ, data = conn.uid("FETCH", uid, "(UID BODY.PEEK[])")
        except (OSError, imaplib.IMAP4.error, EOFError) as exc:
            raise MailboxError(_describe(exc), **self._where("fetch")) from exc
        if typ != "OK":
            raise MailboxError(f"UID FETCH {uid} failed: {data!r}", **self._where("fetch"))
        for i, item in enumerate(data):
            if not isinstance(item, tuple) or b"BODY[]" not in item[0].upper():
                continue
            # The UID may come before the literal (in the same line) or after it (in the next chunk).
            after = data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes) else b""
            m = _FETCH_UID.search(item[0]) or _FETCH_UID.search(after)
            if m is not None and m.group(1).decode() == uid:
                return FetchedMessage(f"{self.user}/{self.folder}", uid, bytes(item[1]))
        raise MailboxError(f"no message with UID {uid} in {self.folder!r}", **self._where("fetch"))

    def fetch_all(self) -> list[FetchedMessage]:
        return list(self.iter_all())

    def iter_all(self) -> Iterator[FetchedMessage]:
        for uid in self.list_uids():
            try:
                message = self.fetch(uid)
            except MailboxError as exc:
                if "no message with UID" not in str(exc):  # expunged since the search: skip it
                    raise
                continue
            yield message

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.logout()  # no CLOSE: the folder is read-only anyway, and nothing is expunged
            except (OSError, imaplib.IMAP4.error, EOFError):
                try:
                    conn.shutdown()
                except OSError:
                    pass

    def __enter__(self) -> ImapReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- POP3


def _pop3_retr_raw(conn: poplib.POP3, number: int) -> bytes:
    """RETR with the line endings kept (poplib's ``retr`` strips them and caps lines at 2048 bytes).

    Uses poplib's ``_putcmd``/``_getresp`` and its buffered ``file``: the stdlib has no public way to
    read a multi-line answer verbatim.
    """
    conn._putcmd(f"RETR {number}")
    conn._getresp()  # raises error_proto on -ERR
    guard: Guard | None = getattr(conn, "guard", None)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            line = conn.file.readline(_POP3_MAX_LINE + 1)
        except OSError:
            if guard is not None:
                guard.check()
            raise
        if guard is not None:
            guard.check()
        if not line or not line.endswith(b"\n"):
            raise poplib.error_proto("connection closed in the middle of RETR")
        if len(line) > _POP3_MAX_LINE:
            raise poplib.error_proto("line too long in RETR")
        if guard is not None:
            guard.charge(len(line))
        if line in (b".\r\n", b".\n"):
            return b"".join(chunks)
        size += len(line)
        if size > MESSAGE_BYTES:
            raise BoundExceeded(f"RETR {number}: the message goes past the {MESSAGE_BYTES}-byte message bound")
        chunks.append(line[1:] if line.startswith(b".") else line)


class Pop3Reader(_RemoteReader):
    """A POP3 maildrop read with ``UIDL`` and ``RETR``; nothing is deleted (``RSET`` before ``QUIT``).

    ``tls="implicit"`` (pop3s) or ``tls="stls"`` (the server must offer STLS, used before USER/PASS).
    POP3 shows the maildrop as it was at login: open a new reader to see newer mail.
    """

    def __init__(self, host: str, port: int, user: str, password: str, *,
                 tls: Literal["implicit", "stls"], ssl_context: ssl.SSLContext | None,
                 timeout: float = 10.0) -> None:
        if tls not in ("implicit", "stls"):
            raise ValueError(f"tls must be 'implicit' or 'stls', not {tls!r}")
        self.host, self.port, self.user, self.tls, self.timeout = host, port, user, tls, timeout
        context = ssl_context or ssl.create_default_context()
        self._conn: poplib.POP3 | None = None
        self._numbers: dict[str, int] = {}
        redact.register(password, user)
        guard = Guard(f"{self._where('')['protocol']} {host}:{port}", timeout=timeout)
        step = "connect"
        try:
            if tls == "implicit":
                self._conn = _BoundedPOP3_SSL(host, port, timeout=timeout, context=context, guard=guard)
            else:
                self._conn = _BoundedPOP3(host, port, timeout=timeout, guard=guard)
                step = "stls"
                try:
                    caps = self._conn.capa()
                except poplib.error_proto:
                    caps = {}
                if "STLS" not in caps:
                    raise MailboxError("the server does not offer STLS; refusing to log in over a plaintext "
                                       "connection", **self._where("stls"))
                self._conn.stls(context=context)
            step = "login"
            if not isinstance(self._conn.sock, ssl.SSLSocket):
                raise MailboxError("the connection is not encrypted; refusing to log in", **self._where(step))
            self._conn.user(user)
            self._conn.pass_(password)
        except MailboxError:
            self._abort()
            guard.close()
            raise
        except (OSError, poplib.error_proto, EOFError) as exc:
            self._abort()
            guard.close()
            detail = _scrub(_describe(exc), password)
            if step == "login":
                raise MailboxError(f"login as {user!r} failed: {detail}", **self._where(step)) from None
            raise MailboxError(detail, **self._where(step)) from None

    def _where(self, step: str) -> dict:
        return {"protocol": "pop3s" if self.tls == "implicit" else "pop3+stls", "host": self.host,
                "port": self.port, "step": step}

    def _drop(self, conn: poplib.POP3) -> None:
        conn.close()

    def list_uids(self) -> list[str]:
        conn = self._live("list")
        try:
            _, lines, _ = conn.uidl()
        except (OSError, poplib.error_proto, EOFError) as exc:
            raise MailboxError(f"UIDL failed (the server must support UIDL): {_describe(exc)}",
                               **self._where("list")) from exc
        numbers: dict[str, int] = {}
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit():
                numbers[parts[1].decode("ascii", "replace")] = int(parts[0])
        if len(numbers) > MAX_LISTED:
            raise MailboxError(f"UIDL lists more than {MAX_LISTED} messages", **self._where("list"))
        self._numbers = numbers
        return sorted(numbers, key=numbers.__getitem__)

    def fetch(self, uid: str) -> FetchedMessage:
        conn = self._live("fetch")
        if uid not in self._numbers:
            self.list_uids()
        number = self._numbers.get(uid)
        if number is None:
            raise MailboxError(f"no message with UIDL {uid!r}", **self._where("fetch"))
        try:
            raw = _pop3_retr_raw(conn, number)
        except (OSError, poplib.error_proto, EOFError) as exc:
            raise MailboxError(f"RETR {number} failed: {_describe(exc)}", **self._where("fetch")) from exc
        return FetchedMessage(self.user, uid, raw)

    def fetch_all(self) -> list[FetchedMessage]:
        return list(self.iter_all())

    def iter_all(self) -> Iterator[FetchedMessage]:
        for uid in self.list_uids():
            yield self.fetch(uid)

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.rset()  # nothing was marked for deletion; this also undoes any "seen" bookkeeping
                conn.quit()
            except (OSError, poplib.error_proto, EOFError):
                try:
                    conn.close()
                except OSError:
                    pass

    def __enter__(self) -> Pop3Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- URLs and waiting


@dataclass(frozen=True)
class MailboxUrl:
    scheme: str  # maildir, imaps, imap, pop3s, pop3
    path: Path | None = None  # maildir only
    host: str = ""
    port: int = 0
    user: str = ""
    folder: str = "INBOX"  # imap(s) only


def parse_mailbox_url(url: str) -> MailboxUrl:
    """Read a mailbox URL; raise :class:`MailboxError` for anything it cannot honour.

    Forms: ``maildir:///abs/path``, ``imaps://user@host:port/FOLDER``, ``imap://user@host:port/FOLDER``
    (STARTTLS), ``pop3s://user@host:port``, ``pop3://user@host:port`` (STLS). The user may be
    percent-encoded (``anna%40pec.example``) or carry a bare ``@``. A password in the URL is refused:
    it comes from the caller (an environment variable), never from a URL that may be logged.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.password is not None:
        raise MailboxError("a mailbox URL must not carry a password; pass it separately (from an "
                           "environment variable)", step="url")
    if scheme == "maildir":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise MailboxError(f"use maildir:///absolute/path, not {url!r}", step="url")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise MailboxError(f"a maildir URL needs an absolute path: {url!r}", step="url")
        return MailboxUrl("maildir", path=Path(path))
    if scheme not in DEFAULT_PORTS:
        raise MailboxError(f"unsupported mailbox URL scheme {parts.scheme!r} (use maildir, imaps, imap, "
                           "pop3s or pop3)", step="url")
    if parts.query or parts.fragment:
        raise MailboxError(f"unexpected query or fragment in {url!r}", step="url")
    host = parts.hostname
    if not host:
        raise MailboxError(f"no host in {url!r}", step="url")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise MailboxError(f"bad port in {url!r}", step="url") from None
    user = unquote(parts.username or "")
    if not user:
        raise MailboxError(f"no user in {url!r} (write {scheme}://USER@{host}:{port})", step="url")
    folder = unquote(parts.path.lstrip("/"))
    if scheme.startswith("pop3"):
        if folder:
            raise MailboxError(f"POP3 has no folders: {url!r}", step="url")
        folder = ""
    return MailboxUrl(scheme, host=host, port=port, user=user, folder=folder or "INBOX")


def open_mailbox(url: str, password: str | None = None, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0) -> MailboxReader:
    """Open the mailbox a URL names (see :func:`parse_mailbox_url`), logged in and ready to read.

    ``ssl_context`` defaults to the system trust store with hostname checking.
    """
    u = parse_mailbox_url(url)
    if u.scheme == "maildir":
        assert u.path is not None
        return MaildirReader(u.path)
    if password is None:
        raise MailboxError(f"a password is needed for {u.scheme}://{u.user}@{u.host}:{u.port}", step="url")
    if u.scheme in ("imaps", "imap"):
        return ImapReader(u.host, u.port, u.user, password, tls="implicit" if u.scheme == "imaps" else "starttls",
                          ssl_context=ssl_context, timeout=timeout, folder=u.folder)
    return Pop3Reader(u.host, u.port, u.user, password, tls="implicit" if u.scheme == "pop3s" else "stls",
                      ssl_context=ssl_context, timeout=timeout)


def wait_for(reader_factory: Callable[[], MailboxReader], predicate: Callable[[FetchedMessage], bool], *,
             deadline: float, poll: float = 0.2) -> FetchedMessage | None:
    """Poll a mailbox until a message satisfies ``predicate``, or ``deadline`` (``time.monotonic()``) passes.

    Each poll opens a fresh reader (POP3 only shows mail present at login), looks at the messages
    not already rejected, and closes it. The mailbox is looked at at least once, even if the deadline
    has already passed. Sleeps never go past the deadline; a single poll is bounded by the reader's
    own socket timeout. Returns None on timeout; reader errors propagate as :class:`MailboxError`.
    """
    if poll <= 0:
        raise ValueError("poll must be positive")
    rejected: set[tuple[str | None, str]] = set()
    while True:
        reader = reader_factory()
        try:
            generation = getattr(reader, "uidvalidity", None)
            for uid in reader.list_uids():
                if (generation, uid) in rejected:
                    continue
                message = reader.fetch(uid)
                if predicate(message):
                    return message
                rejected.add((generation, uid))
        finally:
            reader.close()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(poll, remaining))

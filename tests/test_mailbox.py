"""Mailbox readers (conformance.net.mailbox): Maildir on disk, URL parsing, refusal of plaintext logins
against tiny fake servers, and a real private Dovecot (tests/dovecot.py) serving IMAP and POP3 over TLS.

The Dovecot tests carry the `dovecot` marker. They never skip: without Dovecot they fail and say
"run scripts/setup-dovecot" (CI runs it before the tests).
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dovecot import DovecotServer, DovecotUnavailable, start_dovecot

from conformance.net.mailbox import (
    FetchedMessage,
    ImapReader,
    MailboxError,
    MailboxReader,
    MailboxUrl,
    MaildirReader,
    Pop3Reader,
    imap_utf7,
    open_mailbox,
    parse_mailbox_url,
    wait_for,
)
from conformance.pec.constants import Kind
from conformance.pec.parse import parse_message

_seq = itertools.count(1)


def small_message(n: int, *, eol: bytes = b"\r\n") -> bytes:
    lines = ["From: Carlo Neri <carlo.neri@example.org>", "To: anna@pec.beta.test",
             f"Subject: prova {n}", f"Message-ID: <small.{n}@example.org>",
             "Date: Mon, 23 Nov 2026 10:00:00 +0100", "", f"Messaggio {n}.", ".riga che comincia con un punto",
             "", "fine"]
    return eol.join(x.encode() for x in lines) + eol


def deliver(maildir: Path, raw: bytes, owner: tuple[int, int] | None = None, info: str = "") -> str:
    """Deliver as the reference provider does: write and fsync in tmp/, chown, rename into new/ (or cur/
    with `info`). The name follows the Maildir convention, with Dovecot's S=<size> hint."""
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_seq)}.{host},S={len(raw)}"
    tmp = maildir / "tmp" / name
    with open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    if owner is not None:
        os.chown(tmp, *owner)  # before the rename: the server never sees a root-owned message
    if info:
        os.rename(tmp, maildir / "cur" / f"{name}:{info}")
    else:
        os.rename(tmp, maildir / "new" / name)
    return name


def make_maildir(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def snapshot(maildir: Path) -> dict[str, tuple[int, int]]:
    """Every file under the Maildir with its size and mtime: a reader must leave all of it alone."""
    out = {}
    for dirpath, _, files in os.walk(maildir):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), maildir)] = (st.st_size, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------- Maildir


def test_maildir_reader_returns_exact_bytes_and_moves_nothing(tmp_path):
    box = make_maildir(tmp_path / "anna")
    written = {
        deliver(box, small_message(1)): small_message(1),  # CRLF, in new/
        deliver(box, small_message(2, eol=b"\n")): small_message(2, eol=b"\n"),  # LF only, in new/
        deliver(box, small_message(3), info="2,S"): small_message(3),  # already seen, in cur/
        deliver(box, b"no final newline\r\n\r\nbody", info="2,"): b"no final newline\r\n\r\nbody",
    }
    (box / "new" / ".hidden").write_bytes(b"not a message")
    before = snapshot(box)

    with MaildirReader(box, account="anna") as reader:
        assert isinstance(reader, MailboxReader)
        assert reader.list_uids() == sorted(written)
        fetched = reader.fetch_all()
        one = reader.fetch(next(iter(written)))

    assert {m.uid: m.raw for m in fetched} == written
    assert all(m.mailbox == "anna" for m in fetched)
    assert one.raw == written[one.uid]
    assert snapshot(box) == before  # nothing moved to cur/, renamed (flagged) or touched


def test_maildir_reader_follows_a_message_moved_to_cur(tmp_path):
    box = make_maildir(tmp_path / "box")
    key = deliver(box, small_message(7))
    reader = MaildirReader(box)
    assert reader.list_uids() == [key]
    os.rename(box / "new" / key, box / "cur" / f"{key}:2,S")  # a mail client read it meanwhile
    assert reader.fetch(key) == FetchedMessage(str(box), key, small_message(7))
    with pytest.raises(MailboxError, match="no message"):
        reader.fetch("1234.nothing")
    with pytest.raises(MailboxError, match="not a Maildir key"):
        reader.fetch("../cur")


def test_maildir_reader_refuses_a_directory_that_is_not_a_maildir(tmp_path):
    with pytest.raises(MailboxError, match="not a Maildir"):
        MaildirReader(tmp_path)


def test_open_mailbox_maildir_url(tmp_path):
    box = make_maildir(tmp_path / "my box")
    deliver(box, small_message(1))
    reader = open_mailbox(box.as_uri().replace("file:", "maildir:"))
    assert isinstance(reader, MaildirReader)
    assert [m.raw for m in reader.fetch_all()] == [small_message(1)]


# --------------------------------------------------------------------------- wait_for


def test_wait_for_returns_none_at_the_deadline(tmp_path):
    box = make_maildir(tmp_path / "empty")
    polls = []

    def factory() -> MailboxReader:
        polls.append(time.monotonic())
        return MaildirReader(box)

    start = time.monotonic()
    assert wait_for(factory, lambda m: True, deadline=start + 0.5, poll=0.1) is None
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 0.9
    assert len(polls) >= 3


def test_wait_for_sees_a_message_delivered_later(tmp_path):
    box = make_maildir(tmp_path / "anna")
    deliver(box, small_message(1))  # there already, and not the one awaited
    threading.Timer(0.3, lambda: deliver(box, small_message(2))).start()
    start = time.monotonic()
    found = wait_for(lambda: MaildirReader(box), lambda m: b"Subject: prova 2\r\n" in m.raw,
                     deadline=start + 5, poll=0.05)
    elapsed = time.monotonic() - start
    assert found is not None and found.raw == small_message(2)
    assert 0.3 <= elapsed < 1.5


def test_wait_for_looks_once_even_when_the_deadline_has_passed(tmp_path):
    box = make_maildir(tmp_path / "anna")
    deliver(box, small_message(1))
    found = wait_for(lambda: MaildirReader(box), lambda m: True, deadline=time.monotonic() - 1)
    assert found is not None and found.raw == small_message(1)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url, expected", [
    ("imaps://anna@mail.example:10993/INBOX",
     MailboxUrl("imaps", host="mail.example", port=10993, user="anna", folder="INBOX")),
    ("imaps://anna%40pec.beta.test@127.0.0.1/Posta%20inviata",
     MailboxUrl("imaps", host="127.0.0.1", port=993, user="anna@pec.beta.test", folder="Posta inviata")),
    ("imap://anna@pec.beta.test@[::1]:1143",
     MailboxUrl("imap", host="::1", port=1143, user="anna@pec.beta.test", folder="INBOX")),
    ("pop3s://mario@mail.example", MailboxUrl("pop3s", host="mail.example", port=995, user="mario", folder="INBOX")),
    ("POP3://mario@mail.example:1110/",
     MailboxUrl("pop3", host="mail.example", port=1110, user="mario", folder="INBOX")),
    ("maildir:///var/mail/anna", MailboxUrl("maildir", path=Path("/var/mail/anna"))),
])
def test_parse_mailbox_url(url, expected):
    assert parse_mailbox_url(url) == expected


@pytest.mark.parametrize("url, complaint", [
    ("maildir://relative/path", "maildir:///absolute/path"),
    ("maildir:relative", "absolute path"),
    ("smtp://anna@host", "unsupported mailbox URL scheme"),
    ("imaps://host:993/INBOX", "no user"),
    ("imaps://anna@:993", "no host"),
    ("imaps://anna@host:99999", "bad port"),
    ("pop3s://anna@host/INBOX", "POP3 has no folders"),
    ("imaps://anna@host/INBOX?x=1", "unexpected query"),
])
def test_parse_mailbox_url_refuses(url, complaint):
    with pytest.raises(MailboxError, match=complaint):
        parse_mailbox_url(url)


def test_a_password_in_the_url_is_refused_and_not_repeated():
    with pytest.raises(MailboxError) as info:
        open_mailbox("imaps://anna:Segreto-42@127.0.0.1:1/INBOX", "other")
    assert "must not carry a password" in str(info.value)
    assert "Segreto-42" not in str(info.value)


def test_open_mailbox_needs_a_password_for_imap():
    with pytest.raises(MailboxError, match="password is needed"):
        open_mailbox("imaps://anna@127.0.0.1:1/INBOX")


def test_imap_utf7_folder_names():
    assert imap_utf7("INBOX") == "INBOX"
    assert imap_utf7("Posta & archivio") == "Posta &- archivio"
    assert imap_utf7("Attività") == "Attivit&AOA-"


# --------------------------------------------------------------------------- plaintext refused (fake servers)


class FakeLineServer:
    """One connection on loopback: send `greeting`, then answer each line with `answer(line)`
    (None ends the session). Records every line received. A unit-test fake for one layer."""

    def __init__(self, greeting: bytes, answer: Callable[[bytes], bytes | None]) -> None:
        self.greeting, self.answer, self.received = greeting, answer, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            conn.sendall(self.greeting)
            lines = conn.makefile("rb")
            try:
                for line in lines:
                    self.received.append(line)
                    reply = self.answer(line)
                    if reply is None:
                        return
                    conn.sendall(reply)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def fake_imap_without_starttls(line: bytes) -> bytes | None:
    tag, _, rest = line.partition(b" ")
    command = rest.split(b" ", 1)[0].strip().upper()
    if command == b"CAPABILITY":
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
    if command == b"LOGOUT":
        return None
    return tag + b" BAD not here\r\n"


def fake_pop3_without_stls(line: bytes) -> bytes | None:
    command = line.split(b" ", 1)[0].strip().upper()
    if command == b"CAPA":
        return b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"
    if command == b"QUIT":
        return None
    return b"-ERR not here\r\n"


def test_imap_url_refuses_plaintext_login_without_starttls():
    server = FakeLineServer(b"* OK fake IMAP ready\r\n", fake_imap_without_starttls)
    try:
        with pytest.raises(MailboxError) as info:
            open_mailbox(f"imap://anna@127.0.0.1:{server.port}", "Segreto-42", timeout=5)
    finally:
        server.close()
    message = str(info.value)
    assert "STARTTLS" in message and f"127.0.0.1:{server.port}" in message and "(starttls)" in message
    assert "Segreto-42" not in message
    sent = b"".join(server.received).upper()
    assert b"LOGIN" not in sent and b"AUTHENTICATE" not in sent and b"SEGRETO" not in sent


def test_pop3_url_refuses_plaintext_login_without_stls():
    server = FakeLineServer(b"+OK fake POP3 ready\r\n", fake_pop3_without_stls)
    try:
        with pytest.raises(MailboxError) as info:
            open_mailbox(f"pop3://anna@127.0.0.1:{server.port}", "Segreto-42", timeout=5)
    finally:
        server.close()
    assert "STLS" in str(info.value) and "Segreto-42" not in str(info.value)
    sent = b"".join(server.received).upper()
    assert b"USER" not in sent and b"PASS" not in sent


def test_connection_refused_is_a_mailbox_error():
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(MailboxError, match=rf"imaps 127\.0\.0\.1:{free} \(connect\)"):
        ImapReader("127.0.0.1", free, "anna", "pw", tls="implicit", ssl_context=ssl.create_default_context(),
                   timeout=2)


# --------------------------------------------------------------------------- a real Dovecot


def start_or_fail(users: dict[str, str]) -> DovecotServer:
    """Never a silent skip: without Dovecot the test fails with "run scripts/setup-dovecot"."""
    try:
        return start_dovecot(users)
    except DovecotUnavailable as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


def flags_in(maildir: Path) -> list[str]:
    """The Maildir info of every message file (the part after ':2,'), for files in new/ and cur/."""
    return [name.partition(":2,")[2] for sub in ("new", "cur") for name in os.listdir(maildir / sub)]


@pytest.mark.dovecot
def test_dovecot_imap_and_pop3_read_back_maildir(samples):
    pec = samples.messages[Kind.ACCETTAZIONE]
    assert b"\n" not in pec.replace(b"\r\n", b"")  # CRLF throughout: what is compared is exact
    users = {"anna": "pw-anna-1", "mario": "pw-mario-2"}
    with start_or_fail(users) as server:
        owner = (server.uid, server.gid)
        written = {"anna": [pec, small_message(1)], "mario": [small_message(2)]}
        for user, messages in written.items():
            for raw in messages:
                deliver(server.maildir(user), raw, owner)
        context = server.client_context()

        for user, password in users.items():
            with ImapReader(server.host, server.imaps_port, user, password, tls="implicit",
                            ssl_context=context, timeout=5) as imap:
                uids = imap.list_uids()
                via_imap = imap.fetch_all()
                assert imap.fetch(uids[0]).raw == via_imap[0].raw
            with open_mailbox(f"pop3s://{user}@{server.host}:{server.pop3s_port}", password,
                              ssl_context=context, timeout=5) as pop3:
                assert isinstance(pop3, Pop3Reader)
                via_pop3 = pop3.fetch_all()
            assert len(uids) == len(written[user])
            assert sorted(m.raw for m in via_imap) == sorted(written[user])  # byte for byte
            assert sorted(m.raw for m in via_pop3) == sorted(written[user])
            assert {m.mailbox for m in via_imap} == {f"{user}/INBOX"}
            assert {m.mailbox for m in via_pop3} == {user}
            # EXAMINE + BODY.PEEK[] and POP3 without DELE (RSET before QUIT): nothing marked seen or deleted
            assert all("S" not in f and "T" not in f for f in flags_in(server.maildir(user))), \
                flags_in(server.maildir(user))

        with open_mailbox(f"imaps://anna@{server.host}:{server.imaps_port}/INBOX", users["anna"],
                          ssl_context=context, timeout=5) as imap:
            fetched = [m.raw for m in imap.fetch_all()]
        received_pec = next(raw for raw in fetched if b"X-Ricevuta: accettazione" in raw)
        assert received_pec == pec
        parsed = parse_message(received_pec)
        assert parsed.kind == Kind.ACCETTAZIONE
        assert parsed.signature is not None and parsed.signature.verification.ok
        assert not parsed.signature.canonicalised


@pytest.mark.dovecot
def test_dovecot_starttls_wait_for_bare_lf_and_login_errors():
    users = {"carlo": "pw-carlo-3"}
    with start_or_fail(users) as server:
        context = server.client_context()
        box = server.maildir("carlo")
        imap_url = f"imap://carlo@{server.host}:{server.imap_port}/INBOX"  # STARTTLS
        pop3_url = f"pop3://carlo@{server.host}:{server.pop3_port}"  # STLS

        # wait_for over IMAP: the message arrives while it polls.
        lf_only = small_message(9, eol=b"\n")
        threading.Timer(0.3, lambda: deliver(box, lf_only, (server.uid, server.gid))).start()
        found = wait_for(lambda: open_mailbox(imap_url, users["carlo"], ssl_context=context, timeout=5),
                         lambda m: b"prova 9" in m.raw, deadline=time.monotonic() + 5, poll=0.1)
        assert found is not None

        # A bare-LF file is served with CRLF line endings by both protocols (IMAP and POP3 require CRLF).
        assert found.raw == lf_only.replace(b"\n", b"\r\n")
        with open_mailbox(pop3_url, users["carlo"], ssl_context=context, timeout=5) as pop3:
            assert [m.raw for m in pop3.fetch_all()] == [lf_only.replace(b"\n", b"\r\n")]
        assert (box / "new").exists() and all("S" not in f for f in flags_in(box))

        # A wrong password: a clear error, and the password is nowhere in it.
        for url in (imap_url, pop3_url, f"imaps://carlo@{server.host}:{server.imaps_port}"):
            with pytest.raises(MailboxError) as info:
                open_mailbox(url, "Sbagliata-77", ssl_context=context, timeout=5)
            assert "(login)" in str(info.value) and "Sbagliata-77" not in str(info.value)

        # The system trust store does not know the test CA: refused at the handshake.
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
            open_mailbox(f"pop3s://carlo@{server.host}:{server.pop3s_port}", users["carlo"],
                         ssl_context=ssl.create_default_context(), timeout=5)

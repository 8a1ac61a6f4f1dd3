"""Bounds no target can break: size caps on what is read, deadlines on every exchange and session.

First the clients on their own (conformance.net.smtp, conformance.net.mailbox) against the hostile
servers of tests/hostile_targets.py: each ends with a BoundExceeded / MailboxError naming the bound,
well inside its deadline, without the memory the server tries to make it use. Then the four hostile
targets as a user meets them, `pec-conformance run --target PROFILE` with a few scenarios in its own
process: each run ends within its deadline with FAIL or ERROR, complete schema-valid reports, and a
peak RSS under 1 GiB (the suite process's own high-water mark, VmHWM, sampled while it runs; wait4's
ru_maxrss would also count the test process's pages shared at fork).
"""

from __future__ import annotations

import resource
import smtplib
import time

import pytest
from hostile_targets import PASSWORD, USERS, Harness, imap_server, pop3_server, slow_smtp, smtp_access

from conformance.net.bounds import ANSWER_BYTES, MESSAGE_BYTES, SMTP_REPLY_BYTES, BoundExceeded
from conformance.net.mailbox import ImapReader, MailboxError, Pop3Reader
from conformance.net.smtp import BoundedSMTP
from conformance.report.model import validate_report

pytestmark = pytest.mark.timeout(120)

GIB = 1 << 30
RUN_SCENARIOS = ["acceptance.single", "acceptance.bcc-refused", "delivery.same-provider"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    h = Harness.create(tmp_path_factory.mktemp("bounds"))
    yield h
    h.close()


def _client_tls(h: Harness):
    import ssl

    ctx = ssl.create_default_context(cafile=str(h.pki / "ca" / "ca.pem"))
    ctx.check_hostname = False
    return ctx


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------- the clients alone


def test_endless_multiline_reply_is_cut_at_the_reply_cap(harness):
    port = harness.serve(smtp_access("endless-reply", harness.tls, []))
    before, start = _maxrss(), time.monotonic()
    with pytest.raises(BoundExceeded, match=f"reply longer than {SMTP_REPLY_BYTES} bytes"):
        with BoundedSMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.ehlo()
    assert time.monotonic() - start < 5
    assert _maxrss() - before < 64 << 20


def test_one_byte_at_a_time_hits_the_exchange_deadline(harness):
    port = harness.serve(slow_smtp, dribble=0.05)  # 0.05 s per byte: each read succeeds well inside its timeout
    start = time.monotonic()
    with pytest.raises(BoundExceeded, match="one exchange took longer than its 1 s deadline"):
        with BoundedSMTP("127.0.0.1", port, timeout=0.5, exchange_seconds=1.0, session_seconds=30) as smtp:
            smtp.ehlo()  # about 110 bytes: 5.5 s at that pace
    assert time.monotonic() - start < 2.5


def test_one_byte_at_a_time_hits_the_session_deadline(harness):
    """Short answers, each inside its exchange deadline, in a session longer than the session deadline."""
    port = harness.serve(slow_smtp, dribble=0.05)
    start = time.monotonic()
    with pytest.raises(BoundExceeded, match="the session took longer than its 2 s deadline"):
        with BoundedSMTP("127.0.0.1", port, timeout=0.5, exchange_seconds=1.5, session_seconds=2.0) as smtp:
            for _ in range(10):
                smtp.noop()  # "250 ok": 0.4 s each
    assert time.monotonic() - start < 3.5


def test_a_literal_announced_at_2_gib_is_refused_unread(harness):
    received = [b"Subject: x\r\n\r\nx\r\n"]
    port = harness.serve(imap_server("huge-literal", received), tls=True)
    before, start = _maxrss(), time.monotonic()
    reader = ImapReader("127.0.0.1", port, USERS[0], PASSWORD, tls="implicit", ssl_context=_client_tls(harness),
                        timeout=5)
    with pytest.raises(MailboxError, match=f"literal of 2147483648 bytes, beyond the {MESSAGE_BYTES}-byte"):
        reader.fetch_all()
    reader.close()
    assert time.monotonic() - start < 5
    assert _maxrss() - before < 64 << 20


def test_an_endless_uid_list_stops_at_the_answer_cap(harness):
    port = harness.serve(imap_server("endless-search", []), tls=True)
    before, start = _maxrss(), time.monotonic()
    reader = ImapReader("127.0.0.1", port, USERS[0], PASSWORD, tls="implicit", ssl_context=_client_tls(harness),
                        timeout=5)
    with pytest.raises(MailboxError, match=f"one answer went past {ANSWER_BYTES} bytes"):
        reader.list_uids()
    reader.close()
    assert time.monotonic() - start < 5
    assert _maxrss() - before < 128 << 20


def test_a_retr_that_never_ends_stops_at_the_message_bound(harness):
    received = [b"Subject: x\r\n\r\nx\r\n"]
    port = harness.serve(pop3_server("endless-retr", received), tls=True)
    start = time.monotonic()
    reader = Pop3Reader("127.0.0.1", port, USERS[0], PASSWORD, tls="implicit", ssl_context=_client_tls(harness),
                        timeout=5)
    with pytest.raises(MailboxError, match=f"past the {MESSAGE_BYTES}-byte message bound|deadline"):
        reader.fetch_all()
    reader.close()
    assert time.monotonic() - start < 25


@pytest.mark.parametrize("protocol", ["imaps", "pop3s"])
def test_a_mailbox_answering_one_byte_at_a_time_is_cut(harness, protocol):
    """Every byte inside the 0.5 s read timeout, each answer longer than the 2 s exchange deadline
    (the IMAP greeting; the POP3 login reply, which echoes a long text)."""
    server, reader = (imap_server, ImapReader) if protocol == "imaps" else (pop3_server, Pop3Reader)
    port = harness.serve(server("echo", []), tls=True, dribble=0.05)
    start = time.monotonic()
    with pytest.raises(MailboxError, match="one exchange took longer than its 2 s deadline"):
        reader("127.0.0.1", port, USERS[0], PASSWORD, tls="implicit", ssl_context=_client_tls(harness), timeout=0.5)
    assert time.monotonic() - start < 6


def test_a_tls_handshake_answered_one_byte_at_a_time_is_cut(harness):
    """Before TLS is up too: a server that announces a 16 KiB handshake record and sends it one byte at a
    time (implicit TLS, as imaps). The ssl module bounds a whole handshake by the socket timeout; the
    exchange deadline would cut it otherwise."""

    def trickle(c):
        c.sock.recv(5)  # the start of the ClientHello
        c.send(b"\x16\x03\x03\x40\x00" + b"\x00" * 16384)

    port = harness.serve(trickle, dribble=0.05)
    start = time.monotonic()
    with pytest.raises(MailboxError, match="deadline|timed out"):
        ImapReader("127.0.0.1", port, USERS[0], PASSWORD, tls="implicit", ssl_context=_client_tls(harness),
                   timeout=0.5)
    assert time.monotonic() - start < 4


def test_an_honest_server_is_not_cut(harness):
    received: list[bytes] = []
    port = harness.serve(smtp_access("accept", harness.tls, received))
    with BoundedSMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.starttls(context=_client_tls(harness))
        smtp.login(USERS[0], PASSWORD)
        assert smtp.sendmail(USERS[0], [USERS[1]], b"Subject: ok\r\n\r\nciao\r\n") == {}
    assert received == [b"Subject: ok\r\n\r\nciao\r\n"]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()  # closed by the with block, and the guard with it


def test_the_counterpart_refuses_a_message_beyond_the_message_bound():
    """What the target sends the counterpart (or the ordinary domain) is capped too: 552, nothing kept."""
    from conformance.counterpart.smtp import Recorder, smtp_send

    recorder = Recorder(domains=("pec.controparte.test",), tls_context=None, evidence=None, host="127.0.0.1", port=0,
                        ident="counterpart", point="incoming")
    recorder.start_server()
    try:
        line = b"Y" * 998 + b"\r\n"
        raw = b"Subject: big\r\n\r\n" + line * (MESSAGE_BYTES // len(line) + 1024)
        out = smtp_send("127.0.0.1", recorder.port, "a@evil.test", ["b@pec.controparte.test"], raw, starttls=False,
                        timeout=20)
    finally:
        recorder.stop_server()
    assert out.code == 552, out.transcript
    assert recorder.received == []


def test_the_counterpart_takes_a_few_messages_at_a_time():
    """A target opening many connections at once: only PARALLEL_DATA of them get their 354 (and so may
    hold a message in the suite's memory); the others wait, and go on as soon as one ends."""
    import socket

    from conformance.counterpart.smtp import PARALLEL_DATA, Recorder

    recorder = Recorder(domains=("pec.controparte.test",), tls_context=None, evidence=None, host="127.0.0.1", port=0,
                        ident="counterpart", point="incoming")
    recorder.start_server()
    def reply(s: socket.socket, wait: float = 5.0) -> bytes:
        """One reply line, read straight from the socket (b"" when none comes within `wait`)."""
        s.settimeout(wait)
        data = b""
        try:
            while not data.endswith(b"\r\n"):
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        return data

    sessions: list[socket.socket] = []
    try:
        for _ in range(PARALLEL_DATA + 3):
            s = socket.create_connection(("127.0.0.1", recorder.port), timeout=5)
            sessions.append(s)
            assert reply(s).startswith(b"220")
            for command in (b"HELO evil.test", b"MAIL FROM:<a@evil.test>", b"RCPT TO:<b@pec.controparte.test>"):
                s.sendall(command + b"\r\n")
                assert reply(s).startswith(b"250")
            s.sendall(b"DATA\r\n")
        first = [reply(s, 0.5)[:3] for s in sessions]
        assert first == [b"354"] * PARALLEL_DATA + [b""] * 3, first
        sessions[0].sendall(b"Subject: x\r\n\r\nciao\r\n.\r\n")
        assert reply(sessions[0]).startswith(b"250")
        assert reply(sessions[PARALLEL_DATA]).startswith(b"354")  # a slot freed: the next one goes on
    finally:
        for s in sessions:
            s.close()
        recorder.stop_server()


# ------------------------------------------------------------------ the four hostile targets, end to end


def _assert_ended_well(done, limit: float, needle: str) -> None:
    print(f"\n{done.out.name}: exit {done.returncode}, {done.elapsed:.1f} s, peak RSS {done.peak_rss / 2**20:.0f} MiB "
          f"(wait4 bound {done.peak_rss_bound / 2**20:.0f} MiB)")
    assert done.elapsed < limit, f"still running after {limit} s"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 2), done.stdout + done.stderr[-3000:]
    assert done.peak_rss < GIB, f"peak RSS {done.peak_rss / 2**20:.0f} MiB"
    report = done.report
    assert validate_report(report) == []
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (done.out / name).is_file(), name
    verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
    assert set(RUN_SCENARIOS) <= set(verdicts), verdicts  # (a preflight check may come first)
    assert set(verdicts.values()) & {"FAIL", "ERROR"} and "PASS" not in verdicts.values(), verdicts
    messages = [f["message"] for s in report["scenarios"] for f in s["findings"]
                if f["verdict"] in ("ERROR", "FAIL", "BLOCKED")]
    assert any(needle in m for m in messages), messages


def test_run_against_an_endless_multiline_reply(harness):
    port = harness.serve(smtp_access("endless-reply", harness.tls, []))
    profile = harness.profile("endless-reply", port, harness.maildirs())
    done = harness.run(profile, RUN_SCENARIOS, multiplier=0.05, limit=60)
    _assert_ended_well(done, 30, f"reply longer than {SMTP_REPLY_BYTES} bytes")


def test_run_against_one_byte_at_a_time(harness):
    # The submission reads with a 5 s timeout at least (each byte comes in 0.3 s), so 20 s per exchange:
    # the EHLO answer (about 110 bytes, 33 s at that pace) is cut there.
    port = harness.serve(slow_smtp, dribble=0.3)
    profile = harness.profile("one-byte", port, harness.maildirs())
    done = harness.run(profile, RUN_SCENARIOS, multiplier=0.1, limit=90, preflight=False)
    _assert_ended_well(done, 35, "one exchange took longer than its")


def test_run_against_a_2_gib_imap_literal(harness):
    received: list[bytes] = []
    access = harness.serve(smtp_access("accept", harness.tls, received))
    imap = harness.serve(imap_server("huge-literal", received), tls=True)
    urls = [f"imaps://{u.replace('@', '%40')}@127.0.0.1:{imap}/INBOX" for u in USERS]
    done = harness.run(harness.profile("huge-literal", access, urls), RUN_SCENARIOS, multiplier=0.1, limit=60,
                       preflight=False)
    _assert_ended_well(done, 30, "literal of 2147483648 bytes")


def test_run_against_a_pop3_retr_that_never_ends(harness):
    received: list[bytes] = []
    access = harness.serve(smtp_access("accept", harness.tls, received))
    pop3 = harness.serve(pop3_server("endless-retr", received), tls=True)
    urls = [f"pop3s://{u.replace('@', '%40')}@127.0.0.1:{pop3}" for u in USERS]
    done = harness.run(harness.profile("endless-retr", access, urls), RUN_SCENARIOS, multiplier=0.1, limit=60,
                       preflight=False)
    _assert_ended_well(done, 30, "message bound")

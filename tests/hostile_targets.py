"""Hostile targets on loopback, for `pec-conformance run --target` (tests/test_bounds.py, tests/test_secrets.py).

Each server is a few lines of protocol played by a thread per connection: an SMTP access point (with
STARTTLS and AUTH, a recorder of what it was sent), an IMAP server over implicit TLS and a POP3 server
over implicit TLS. A `behaviour` string makes each one hostile in one way: an endless multi-line
reply, a literal announced at 2 GiB and streamed, a RETR that never ends, one byte at a time, or an
echo of the credentials it was sent. `Harness` writes the PKI, the profile, runs the suite in a child
process and measures it (wall time and the peak RSS of the suite process itself).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

from cryptography.hazmat.primitives import serialization

from conformance.pec.pki import issue_tls_server_certificate, load_pki_directory, private_key_pem

PASSWORD = "Evil/Pa$$ w0rd+echo!"  # a space, a slash, a plus: URL-encoding gives two different forms
USERS = ("mario@evil.test", "giulia@evil.test")
DOMAIN = "evil.test"


def password_forms(password: str = PASSWORD, users: tuple[str, ...] = USERS) -> dict[str, str]:
    """Every form of the password an output file must not contain."""
    raw = password.encode()
    forms = {"raw": password, "auth-login": base64.b64encode(raw).decode(), "url": quote(password, safe=""),
             "url-plus": quote_plus(password)}
    for user in users:
        u = user.encode()
        forms[f"auth-plain {user}"] = base64.b64encode(b"\0" + u + b"\0" + raw).decode()
        forms[f"auth-plain-authzid {user}"] = base64.b64encode(u + b"\0" + u + b"\0" + raw).decode()
    return forms


def echo_text(password: str = PASSWORD) -> str:
    """What an echoing server says back: the password in each of its forms."""
    return " ".join(password_forms(password).values())


# ----------------------------------------------------------------------------------------- plumbing


class Conn:
    """One client connection on the server side: lines in, bytes out (optionally one byte at a time)."""

    def __init__(self, sock: socket.socket, dribble: float = 0.0) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.dribble = dribble

    def send(self, data: bytes) -> None:
        if not self.dribble:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(self.dribble)

    def readline(self) -> bytes:
        return self.file.readline(1 << 20)

    def starttls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.file = self.sock.makefile("rb")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(play: Callable[[Conn], None], *, tls: ssl.SSLContext | None = None, dribble: float = 0.0) -> _Server:
    """A loopback server playing `play` on every connection (implicit TLS when `tls` is given)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock = self.request
            sock.settimeout(30)
            try:
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=True)
                play(Conn(sock, dribble))
            except (OSError, ValueError):
                pass  # the suite cut the connection: that is the point

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


# ------------------------------------------------------------------------------------------ SMTP


def smtp_access(behaviour: str, tls: ssl.SSLContext, received: list[bytes]) -> Callable[[Conn], None]:
    """An access point: STARTTLS, AUTH PLAIN/LOGIN, takes any message. `behaviour`: "accept",
    "endless-reply" (EHLO answered by `250-` lines for ever) or "echo" (every reply after the
    greeting carries the password in all its forms)."""

    def play(c: Conn) -> None:
        c.send(b"220 evil.test ESMTP\r\n")
        echo = (" " + echo_text()).encode() if behaviour == "echo" else b""
        while line := c.readline():
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                if behaviour == "endless-reply":
                    chunk = b"250-" + b"X" * 70 + b"\r\n"
                    while True:
                        c.send(chunk * 64)
                c.send(b"250-evil.test" + echo + b"\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif cmd == b"STAR":
                c.send(b"220 2.0.0 go ahead\r\n")
                c.starttls(tls)
            elif cmd == b"AUTH":
                parts = line.split()
                if len(parts) == 2:  # no initial response: ask for it
                    c.send(b"334 \r\n")
                    parts.append(c.readline().strip())
                c.send(b"235 2.7.0 accepted " + parts[-1] + echo + b"\r\n")
            elif cmd == b"DATA":
                c.send(b"354 go on\r\n")
                body = []
                while (data := c.readline()) not in (b".\r\n", b".\n", b""):
                    body.append(data[1:] if data.startswith(b"..") else data)
                received.append(b"".join(body))
                c.send(b"250 2.0.0 queued" + echo + b"\r\n")
            elif cmd == b"QUIT":
                c.send(b"221 2.0.0 bye" + echo + b"\r\n")
                return
            else:
                c.send(b"250 2.0.0 ok" + echo + b"\r\n")

    return play


def slow_smtp(c: Conn) -> None:
    """An honest-looking access point that greets at once, then answers one byte at a time (the Conn
    dribbles)."""
    pace, c.dribble = c.dribble, 0.0
    c.send(b"220 slow\r\n")
    c.dribble = pace
    while line := c.readline():
        if line[:4].upper() in (b"EHLO", b"HELO"):
            c.send(b"250-slow.evil.test\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250-STARTTLS\r\n"
                   b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        else:
            c.send(b"250 ok\r\n")


# ---------------------------------------------------------------------------------------- messages


def echo_message(original: bytes, n: int) -> bytes:
    """A message for the sender's mailbox that carries the scenario's subject (so the suite takes it as
    the scenario's) and the password in every form, in its header and its body."""
    subject = b"(none)"
    for line in original.split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            subject = line[8:].strip()
    echo = echo_text().encode()
    return (b"From: posta-certificata@evil.test\r\nTo: mario@evil.test\r\nSubject: ACCETTAZIONE: " + subject
            + b" " + echo + b"\r\nX-Ricevuta: accettazione\r\nX-Echo: " + echo + b"\r\nMessage-ID: <echo-%d@evil.test>"
            b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPassword: " % n + echo
            + b"\r\n")


# ------------------------------------------------------------------------------------------ IMAP


def imap_server(behaviour: str, received: list[bytes]) -> Callable[[Conn], None]:
    """IMAP4rev1 over implicit TLS, just enough for EXAMINE, UID SEARCH and UID FETCH BODY.PEEK[].
    `behaviour`: "huge-literal" (FETCH announces 2 GiB and streams it), "endless-search" (UID SEARCH
    answers for ever) or "echo" (login replies, the messages and a refused login for the second user
    carry the password)."""

    def play(c: Conn) -> None:
        c.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] evil IMAP ready\r\n")
        echo = echo_text().encode()
        while line := c.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            cmd, _, args = rest.partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPABILITY":
                c.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif cmd == b"AUTHENTICATE":
                c.send(b"+ \r\n")
                blob = c.readline().strip()
                user = base64.b64decode(blob).split(b"\0")[1]
                if behaviour == "echo" and user == USERS[1].encode():
                    c.send(tag + b" NO [AUTHENTICATIONFAILED] wrong password for " + blob + b" " + echo + b"\r\n")
                else:
                    c.send(tag + b" OK logged in " + (echo if behaviour == "echo" else b"") + b"\r\n")
            elif cmd in (b"EXAMINE", b"SELECT"):
                c.send(b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" % len(received) + tag
                       + b" OK [READ-ONLY] done\r\n")
            elif cmd == b"UID" and args.upper().startswith(b"SEARCH"):
                if behaviour == "endless-search":
                    line = b"* SEARCH " + b" ".join(b"%d" % i for i in range(1, 20000)) + b"\r\n"
                    while True:
                        c.send(line)
                uids = b" ".join(b"%d" % (i + 1) for i in range(len(received)))
                c.send(b"* SEARCH " + uids + b"\r\n" + tag + b" OK done\r\n")
            elif cmd == b"UID" and args.upper().startswith(b"FETCH"):
                uid = int(args.split()[1])
                if behaviour == "huge-literal":
                    c.send(b"* %d FETCH (UID %d BODY[] {2147483648}\r\n" % (uid, uid))
                    chunk = b"A" * 65536
                    while True:
                        c.send(chunk)
                body = echo_message(received[uid - 1], uid)
                c.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(body)) + body + b")\r\n"
                       + tag + b" OK done\r\n")
            elif cmd == b"LOGOUT":
                c.send(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                c.send(tag + b" BAD unknown\r\n")

    return play


# ------------------------------------------------------------------------------------------ POP3


def pop3_server(behaviour: str, received: list[bytes]) -> Callable[[Conn], None]:
    """POP3 over implicit TLS: USER/PASS, UIDL, RETR. `behaviour`: "endless-retr" (RETR never ends) or
    "echo" (PASS replies, the messages and a refused login for the second user carry the password)."""

    def play(c: Conn) -> None:
        c.send(b"+OK evil POP3 ready\r\n")
        echo = echo_text().encode()
        user = b""
        while line := c.readline():
            cmd, _, args = line.rstrip(b"\r\n").partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPA":
                c.send(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
            elif cmd == b"USER":
                user = args
                c.send(b"+OK\r\n")
            elif cmd == b"PASS":
                if behaviour == "echo" and user == USERS[1].encode():
                    c.send(b"-ERR [AUTH] wrong password " + args + b" " + echo + b"\r\n")
                else:
                    c.send(b"+OK welcome " + (echo if behaviour == "echo" else b"") + b"\r\n")
            elif cmd == b"UIDL":
                c.send(b"+OK\r\n" + b"".join(b"%d evil-%d\r\n" % (i + 1, i + 1) for i in range(len(received)))
                       + b".\r\n")
            elif cmd == b"RETR":
                n = int(args)
                c.send(b"+OK message follows\r\n")
                if behaviour == "endless-retr":
                    chunk = b"Y" * 998 + b"\r\n"
                    while True:
                        c.send(chunk * 64)
                body = echo_message(received[n - 1], n)
                c.send(b"".join((b"." + ln if ln.startswith(b".") else ln) for ln in body.splitlines(keepends=True))
                       + b".\r\n")
            elif cmd in (b"RSET", b"NOOP"):
                c.send(b"+OK\r\n")
            elif cmd == b"QUIT":
                c.send(b"+OK bye\r\n")
                return
            else:
                c.send(b"-ERR unknown\r\n")

    return play


# ------------------------------------------------------------------------------------------- harness


_SHARED: list[tuple[Path, tuple[Path, Path]]] = []


def _vm_hwm(pid: int) -> int:
    """The peak resident set of a running process since its exec (Linux), in bytes; 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _has_preflight() -> bool:
    from conformance.cli import run

    return any(p.name == "preflight" for p in run.params)


@dataclass
class Finished:
    out: Path
    returncode: int
    elapsed: float
    peak_rss: int  # bytes: the suite's process's own high-water mark (VmHWM), sampled while it ran
    peak_rss_bound: int  # bytes: ru_maxrss from wait4, an upper bound (it counts the parent's pages at fork)
    stdout: str
    stderr: str

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text(encoding="utf-8"))


@dataclass
class Harness:
    root: Path
    pki: Path
    tls: ssl.SSLContext
    servers: list = field(default_factory=list)

    @classmethod
    def create(cls, root: Path) -> Harness:
        """A harness in `root`; the PKI (a few seconds to make) is made once per test process and shared."""
        if not _SHARED:
            _SHARED.append(cls._make_pki(root))
        pki, tls_files = _SHARED[0]
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*map(str, tls_files))
        return cls(root, pki, tls)

    @staticmethod
    def _make_pki(root: Path) -> tuple[Path, tuple[Path, Path]]:
        pki = root / "pki"
        done = subprocess.run([sys.executable, "-m", "conformance.cli", "pki", "init", str(pki), "--provider",
                               "Gestore Controparte S.p.A.", "--domain", "pec.controparte.test"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        layout = load_pki_directory(pki)
        key, cert = issue_tls_server_certificate(layout.ca, ("127.0.0.1", "localhost"))
        (root / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (root / "tls.key").write_bytes(private_key_pem(key))
        return pki, (root / "tls.pem", root / "tls.key")

    def serve(self, play: Callable[[Conn], None], *, tls: bool = False, dribble: float = 0.0) -> int:
        server = serve(play, tls=self.tls if tls else None, dribble=dribble)
        self.servers.append(server)
        return server.server_address[1]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def profile(self, name: str, access_port: int, urls: list[str]) -> Path:
        incoming = self.serve(lambda c: None)  # takes the connection and drops it
        boxes = "".join(f'[[mailboxes]]\naddress = "{user}"\nurl = "{url}"\npassword_env = "EVIL_PASSWORD"\n'
                        for user, url in zip(USERS, urls, strict=True))
        path = self.root / f"{name}.toml"
        path.write_text(f'name = "Gestore Ostile S.p.A."\ndomains = ["{DOMAIN}"]\n'
                        f'[access]\nhost = "127.0.0.1"\nport = {access_port}\ntls = "starttls"\n'
                        f'[incoming]\nhost = "127.0.0.1"\nport = {incoming}\n{boxes}'
                        f'[trust]\nca = "{self.pki / "ca" / "ca.pem"}"\n'
                        f'[timers]\npreavviso = 1\ntimeout = 2\nwindow_start = 1.5\n'
                        f'[capabilities]\nordinary_mail = "anomaly"\n', encoding="utf-8")
        return path

    def maildirs(self) -> list[str]:
        urls = []
        for user in USERS:
            box = self.root / "mail" / user
            for sub in ("new", "cur", "tmp"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            urls.append(f"maildir://{box}")
        return urls

    def run(self, profile: Path, scenarios: list[str], *, multiplier: float, limit: float,
            preflight: bool = True) -> Finished:
        """The suite as a user runs it, in its own process; killed (and the test failed by the caller)
        if it outlives `limit` seconds. Without `preflight` the scenarios run whatever the target's state
        (these fakes relay nothing to the counterpart, which a preflight check would hold against them)."""
        out = self.root / f"out-{profile.stem}"
        cmd = [sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target", str(profile),
               "--counterpart-pki", str(self.pki), "--timeout-multiplier", str(multiplier), "--out", str(out)]
        if not preflight and _has_preflight():
            cmd.append("--no-preflight")
        for s in scenarios:
            cmd += ["--scenario", s]
        env = dict(os.environ, EVIL_PASSWORD=PASSWORD)
        with open(self.root / "stdout.txt", "wb") as so, open(self.root / "stderr.txt", "wb") as se:
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=so, stderr=se, env=env)
            hwm = 0
            while True:
                hwm = max(hwm, _vm_hwm(proc.pid))
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - start > limit:
                    proc.send_signal(signal.SIGKILL)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        return Finished(out, proc.returncode, elapsed, hwm or usage.ru_maxrss * 1024, usage.ru_maxrss * 1024,
                        (self.root / "stdout.txt").read_text(errors="replace"),
                        (self.root / "stderr.txt").read_text(errors="replace"))

"""Degenerate targets: fake "PEC providers" on loopback that implement nothing of PEC.

Each has what set-up needs and nothing more: an access point with STARTTLS and AUTH (login names that
are not the addresses), an incoming point offering STARTTLS, and a Maildir per user. What it does with
a message is its `shape`:

- refuse-all: every message is refused with 554 (access and incoming point);
- accept-all: every message is accepted with 250 and thrown away;
- defer-all: every message is deferred with 451;
- relay: a plain mail relay: a user's message goes unchanged to its recipients, a message arriving at
  the incoming point is stored unchanged in the user's mailbox; no receipt, no envelope;
- mirror: like relay, and a copy of what a user sends lands back in that user's mailbox;
- echo: a user's message comes back unchanged into that user's mailbox and goes nowhere else;
  incoming messages are stored unchanged;
- refuse-charset: a relay whose access point refuses every ISO-8859-1 message with "554 unhandled
  charset" (the suite's messages are ISO-8859-1): every refusal names a cause that is not the rule's.

A suite run against any of them must not give PASS beyond what the fake really does (STARTTLS, AUTH).
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from conformance.net.ports import free_port

# aiosmtpd itself sets the legacy attribute on every AUTH: not something a test can act on.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")

SHAPES = ("refuse-all", "accept-all", "defer-all", "relay", "mirror", "echo", "refuse-charset")
DOMAIN = "pec.finto.test"
COUNTERPART_DOMAIN = "pec.controparte.test"
ORDINARY_DOMAIN = "esterno.test"
USERS = {f"utente{i}@{DOMAIN}": (f"utente{i}", f"segreto-{i}") for i in (1, 2, 3)}  # address: (login, password)
PASSWORD_ENV = "FAKE_PEC_PASSWORD_{}"
REFUSE = "554 5.7.1 message refused"
REFUSE_CHARSET = "554 5.6.0 unhandled charset"
DEFER = "451 4.3.0 try again later"


def _free_port() -> int:
    return free_port("127.0.0.1")


def _store(box: Path, raw: bytes) -> None:
    """Maildir delivery: write in tmp/, then move into new/ (a reader never sees half a message)."""
    name = f"{time.time():.6f}.{time.monotonic_ns()}.fake"
    (box / "tmp" / name).write_bytes(raw)
    (box / "tmp" / name).replace(box / "new" / name)


@dataclass
class FakeTarget:
    folder: Path
    shape: str
    tls: ssl.SSLContext
    counterpart_port: int = field(default_factory=_free_port)
    ordinary_port: int = field(default_factory=_free_port)
    passwords: dict[str, str] = field(default_factory=lambda: {a: p for a, (_, p) in USERS.items()})
    incoming_auth: bool = False  # its incoming point demands AUTH from other providers (a set-up defect)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape}")
        self.boxes = {}
        for address in USERS:
            box = self.folder / "mail" / address
            for sub in ("new", "cur", "tmp"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            self.boxes[address] = box
        self._controllers: list[Controller] = []
        self.access_port = self.incoming_port = 0

    # -------------------------------------------------------------- servers
    def start(self) -> FakeTarget:
        self.access_port, self.incoming_port = _free_port(), _free_port()
        access = Controller(_Access(self), hostname="127.0.0.1", port=self.access_port, tls_context=self.tls,
                            require_starttls=True, auth_required=True, auth_require_tls=True,
                            authenticator=self._authenticate, data_size_limit=100_000_000, ident="fake access")
        incoming = Controller(_Incoming(self), hostname="127.0.0.1", port=self.incoming_port, tls_context=self.tls,
                              require_starttls=False, data_size_limit=100_000_000, ident="fake incoming",
                              auth_required=self.incoming_auth, auth_require_tls=False,
                              authenticator=self._authenticate)
        for c in (access, incoming):
            c.start()
            self._controllers.append(c)
        return self

    def stop(self) -> None:
        for c in self._controllers:
            try:
                c.stop()
            except Exception:  # already stopped
                pass
        self._controllers.clear()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        for address, (name, _) in USERS.items():
            if login == name and password == self.passwords[address]:
                session.fake_user = address  # type: ignore[attr-defined]
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # -------------------------------------------------------------- behaviour
    def forward(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        """Plain relay: local recipients to their Maildir, the others over SMTP to their domain, unchanged."""
        routes = {COUNTERPART_DOMAIN: self.counterpart_port, ORDINARY_DOMAIN: self.ordinary_port}
        by_port: dict[int, list[str]] = {}
        for rcpt in rcpts:
            domain = rcpt.rpartition("@")[2].lower()
            if rcpt.lower() in self.boxes:
                _store(self.boxes[rcpt.lower()], raw)
            elif domain in routes:
                by_port.setdefault(routes[domain], []).append(rcpt)
        for port, group in by_port.items():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                    smtp.sendmail(mail_from, group, raw)
            except (OSError, smtplib.SMTPException):
                pass  # a relay that cannot deliver just drops it: nothing of PEC tells the sender

    def profile(self, pki: Path, *, timers: bool = True) -> str:
        boxes = "".join(f'''
[[mailboxes]]
address = "{a}"
username = "{login}"
url = "maildir://{self.boxes[a]}"
password_env = "{PASSWORD_ENV.format(i)}"
''' for i, (a, (login, _)) in enumerate(USERS.items(), 1))
        return f'''name = "Gestore Finto S.p.A."
domains = ["{DOMAIN}"]
[access]
host = "127.0.0.1"
port = {self.access_port}
tls = "starttls"
[incoming]
host = "127.0.0.1"
port = {self.incoming_port}
{boxes}
[trust]
ca = "{pki / 'ca' / 'ca.pem'}"
[counterpart]
host = "127.0.0.1"
port = {self.counterpart_port}
domain = "{COUNTERPART_DOMAIN}"
[ordinary]
host = "127.0.0.1"
port = {self.ordinary_port}
domain = "{ORDINARY_DOMAIN}"
[timers]
preavviso = 1
timeout = 2
window_start = 1.5
[capabilities]
ordinary_mail = "anomaly"
sender_mismatch = "smtp"
max_recipients = 50
max_total_size = 30000000
max_message_size = 32000000
receipt_types = ["completa", "breve", "sintetica"]
timers = {"true" if timers else "false"}
'''

    def environment(self) -> dict[str, str]:
        return {PASSWORD_ENV.format(i): self.passwords[a] for i, a in enumerate(USERS, 1)}


class _Access:
    def __init__(self, fake: FakeTarget):
        self.fake = fake

    async def handle_DATA(self, server, session, envelope):
        fake, raw = self.fake, envelope.original_content or envelope.content
        raw = raw if isinstance(raw, bytes) else raw.encode()
        if fake.shape == "refuse-all":
            return REFUSE
        if fake.shape == "defer-all":
            return DEFER
        if fake.shape == "refuse-charset" and b"iso-8859-1" in raw.lower():
            return REFUSE_CHARSET
        if fake.shape in ("relay", "mirror", "refuse-charset"):
            fake.forward(envelope.mail_from, list(envelope.rcpt_tos), raw)
        if fake.shape in ("mirror", "echo"):
            user = getattr(session, "fake_user", None)
            if user in fake.boxes:
                _store(fake.boxes[user], raw)
        return "250 2.0.0 OK"


class _Incoming:
    def __init__(self, fake: FakeTarget):
        self.fake = fake

    async def handle_DATA(self, server, session, envelope):
        fake, raw = self.fake, envelope.original_content or envelope.content
        raw = raw if isinstance(raw, bytes) else raw.encode()
        if fake.shape == "refuse-all":
            return REFUSE
        if fake.shape == "defer-all":
            return DEFER
        if fake.shape in ("relay", "mirror", "echo", "refuse-charset"):
            for rcpt in envelope.rcpt_tos:
                if rcpt.lower() in fake.boxes:
                    _store(fake.boxes[rcpt.lower()], raw)
        return "250 2.0.0 OK"


def counterpart_pki(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A `pki init` folder for the counterpart, and a TLS server context (certificate from its CA) for a fake."""
    from cryptography.hazmat.primitives import serialization

    from conformance.pec.pki import issue_tls_server_certificate, load_pki_directory, private_key_pem

    pki = folder / "pki"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "pki", "init", str(pki), "--provider",
                           "Gestore Controparte S.p.A.", "--domain", COUNTERPART_DOMAIN],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    layout = load_pki_directory(pki)
    key, cert = issue_tls_server_certificate(layout.ca, ("127.0.0.1", "localhost"))
    (folder / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(private_key_pem(key))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(folder / "tls.pem"), str(folder / "tls.key"))
    return pki, tls

"""A private Dovecot on loopback for the tests: IMAP and POP3 over TLS, reading a Maildir root.

    with start_dovecot({"anna": "pw-anna", "mario": "pw-mario"}) as server:
        server.maildir("anna")          # <mail_root>/anna, with tmp/ new/ cur/ owned by pecmail
        server.imaps_port, server.pop3s_port, server.ca_pem, server.client_context()

Dovecot refuses to run mail processes as root, so the mailboxes belong to a dedicated system user
(``pecmail``, created on first use). The configuration is written from scratch into a temporary
directory (no ``!include`` of /etc/dovecot), with base_dir, state_dir and logs there, ports above
1024 on 127.0.0.1, ``ssl = required`` and a certificate made here for 127.0.0.1 and localhost.
Dovecot runs in the foreground (``dovecot -F -c FILE``) as our child, so ``stop()`` knows its pid.
Written for Dovecot 2.3 (Debian bookworm ships 2.3.19). Needs root, as CI has.
"""

from __future__ import annotations

import atexit
import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance.net.ports import free_ports  # noqa: F401 (the Dovecot tests take their ports from here)

MAIL_USER = "pecmail"
SETUP_HINT = "Dovecot is not installed: run scripts/setup-dovecot (as root) first"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class DovecotUnavailable(RuntimeError):
    """Dovecot cannot be started here (not installed, not root, or it failed to start)."""


def find_dovecot() -> str:
    path = shutil.which("dovecot", path=_SBIN_PATH)
    if path is None:
        raise DovecotUnavailable(SETUP_HINT)
    return path


def dovecot_version(binary: str | None = None) -> str:
    out = subprocess.run([binary or find_dovecot(), "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


# --------------------------------------------------------------------------- test certificates


@dataclass(frozen=True)
class TestTls:
    ca_pem: bytes
    cert_pem: bytes  # server certificate followed by the CA (the chain Dovecot sends)
    key_pem: bytes


def make_test_tls(names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TestTls:
    """A throw-away self-signed CA and a server certificate for ``names`` (IP addresses or DNS names)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pec-conformance test mail CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    return TestTls(ca_pem=ca_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM) + ca_pem,
                   key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))


# --------------------------------------------------------------------------- system user, ports


def ensure_mail_user(name: str = MAIL_USER) -> pwd.struct_passwd:
    """The system user that owns the test mailboxes (created once, like `useradd --system`)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd", path=_SBIN_PATH)
    if useradd is None:
        raise DovecotUnavailable("useradd not found: cannot create the mailbox user " + name)
    done = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True, timeout=30)
    try:
        return pwd.getpwnam(name)  # also fine when a concurrent run created it first
    except KeyError:
        raise DovecotUnavailable(f"cannot create user {name}: {done.stderr.strip()}") from None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


# --------------------------------------------------------------------------- the server


CONFIG = """\
# Private test Dovecot written by tests/dovecot.py (Dovecot 2.3 syntax). No system config included.
instance_name = {instance}
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log_path}
info_log_path = {info_log_path}
debug_log_path = {info_log_path}
listen = {host}
protocols = imap pop3
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose: no failure delay, and no anvil auth penalty (2 s doubling up
# to 15 s per failure from one IP; the documented way to turn it off is the listener's mode = 0).
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_location = maildir:{mail_root}/%u
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_file}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_file}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
"""


@dataclass
class DovecotServer:
    """A running private Dovecot. Ports: imaps and pop3s (implicit TLS), imap and pop3 (STARTTLS/STLS
    offered, login refused before it because ``ssl = required``)."""

    host: str
    imaps_port: int
    pop3s_port: int
    imap_port: int
    pop3_port: int
    ca_pem: bytes
    mail_root: Path
    workdir: Path
    config_path: Path
    uid: int
    gid: int
    users: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only this server's test CA, hostname checked."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))

    def maildir(self, user: str) -> Path:
        """The user's Maildir (INBOX), with tmp/ new/ cur/ created and owned by the mail user."""
        path = self.mail_root / user
        for sub in ("", "tmp", "new", "cur"):
            (path / sub).mkdir(exist_ok=True)
            os.chown(path / sub, self.uid, self.gid)
        return path

    def chown(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)

    def log_text(self) -> str:
        parts = []
        for name in ("dovecot.log", "dovecot-info.log", "stderr.log"):
            p = self.workdir / name
            if p.exists():
                parts.append(f"--- {name}\n" + p.read_text(errors="replace")[-8000:])
        return "\n".join(parts)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master (it stops its children), wait; SIGKILL its process group if it lingers."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _greets(host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> bool:
    """True when the port answers with a protocol greeting (after a TLS handshake when `context`)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = context.wrap_socket(raw, server_hostname=host) if context is not None else raw
            try:
                return sock.recv(512).startswith((b"* OK", b"+OK"))
            finally:
                if sock is not raw:
                    sock.close()
    except (OSError, ssl.SSLError):
        return False


def start_dovecot(users: dict[str, str], *, host: str = "127.0.0.1", startup_timeout: float = 15.0,
                  mail_user: str = MAIL_USER, mail_root: Path | None = None) -> DovecotServer:
    """Start a private Dovecot for `users` ({name: password}); return once every port greets over TLS."""
    binary = find_dovecot()
    if os.geteuid() != 0:
        raise DovecotUnavailable("the test Dovecot needs root (it runs mail processes as a system user)")
    for name, password in users.items():
        if not name or any(c in name for c in ":/\n") or ":" in password or "\n" in password:
            raise ValueError(f"unusable test user or password for {name!r}")
    account = ensure_mail_user(mail_user)
    uid, gid = account.pw_uid, account.pw_gid
    workdir = Path(tempfile.mkdtemp(prefix="pec-dovecot-"))
    os.chmod(workdir, 0o755)  # the mail user must reach the mail root, the auth process the users file
    try:
        tls = make_test_tls((host, "localhost") if host != "localhost" else ("localhost", "127.0.0.1"))
        cert, key = workdir / "server.pem", workdir / "server.key"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        # An existing Maildir root (the reference provider's) or a fresh one.
        mail_root = Path(mail_root) if mail_root is not None else workdir / "mail"
        mail_root.mkdir(exist_ok=True)
        for name in users:
            for sub in ("", "tmp", "new", "cur"):
                (mail_root / name / sub).mkdir(exist_ok=True)
        _chown_tree(mail_root, uid, gid)
        users_file = workdir / "users"
        users_file.write_text("".join(f"{name}:{{PLAIN}}{password}:{uid}:{gid}::{mail_root / name}::\n"
                                      for name, password in users.items()))
        try:  # readable by the auth process (user dovecot), not by everyone
            os.chown(users_file, 0, grp.getgrnam("dovecot").gr_gid)
            os.chmod(users_file, 0o640)
        except KeyError:
            os.chmod(users_file, 0o644)
        imaps_port, pop3s_port, imap_port, pop3_port = free_ports(4, host)
        config_path = workdir / "dovecot.conf"
        config_path.write_text(CONFIG.format(
            instance=f"pec-test-{imaps_port}", base_dir=workdir / "run", state_dir=workdir / "state",
            log_path=workdir / "dovecot.log", info_log_path=workdir / "dovecot-info.log", host=host,
            cert=cert, key=key, mail_root=mail_root, uid=uid, gid=gid, users_file=users_file,
            imap_port=imap_port, imaps_port=imaps_port, pop3_port=pop3_port, pop3s_port=pop3s_port))
        (workdir / "state").mkdir()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    server = DovecotServer(host=host, imaps_port=imaps_port, pop3s_port=pop3s_port, imap_port=imap_port,
                           pop3_port=pop3_port, ca_pem=tls.ca_pem, mail_root=mail_root, workdir=workdir,
                           config_path=config_path, uid=uid, gid=gid, users=dict(users))
    with open(workdir / "stderr.log", "wb") as err:
        server.process = subprocess.Popen([binary, "-F", "-c", str(config_path)], stdin=subprocess.DEVNULL,
                                          stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
    atexit.register(server.stop)
    context = server.client_context()
    deadline = time.monotonic() + startup_timeout
    pending = [(imaps_port, context), (pop3s_port, context), (imap_port, None), (pop3_port, None)]
    while pending:
        status = server.process.poll() if server.process is not None else -1
        if status is not None:
            logs = server.log_text()
            server.stop()
            raise DovecotUnavailable(f"dovecot exited with status {status} at startup:\n{logs}")
        pending = [(p, c) for p, c in pending if not _greets(host, p, c, timeout=2.0)]
        if not pending:
            break
        if time.monotonic() >= deadline:
            logs = server.log_text()
            server.stop()
            raise DovecotUnavailable(f"dovecot did not answer on {[p for p, _ in pending]} within "
                                     f"{startup_timeout}s:\n{logs}")
        time.sleep(0.05)
    return server

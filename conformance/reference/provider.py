"""The reference provider: access, incoming and delivery points and sender-side tracking, wired to
real SMTP servers (aiosmtpd) on loopback, a Maildir store and a SQLite state file.

Nothing is acknowledged before it is on disk: a submission or an incoming message gets its `250`
only after everything it caused (receipts, envelopes, deliveries, timers) is committed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import ssl
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..net.ports import free_port
from ..pec import build as b
from ..pec.constants import Kind
from ..pec.index import load_index
from ..pec.parse import parse_message
from .access import AccessPoint, Submission
from .config import ConfigError, ProviderConfig, load_config
from .delivery import DeliveryPoint, Maildirs
from .faults import FaultSet, resign
from .incoming import IncomingPoint, Outgoing, Refused
from .store import Store
from .tracking import Tracker, transaction_to_dict
from .transport import Transport
from .virus import Scanner, ScannerError

# aiosmtpd logs a warning about its own deprecated attribute whenever AUTH succeeds: nothing to act on.
logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())


def _load_pem_certs(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]


class ReferenceProvider:
    def __init__(self, config: ProviderConfig, faults: list[str] | tuple[str, ...] | None = None):
        self.config = config
        self.faults = FaultSet(list(faults) if faults is not None else config.faults)
        key = serialization.load_pem_private_key(config.signing_key.read_bytes(), password=None)
        cert = _load_pem_certs(config.signing_certificate)[0]
        defect = self.faults.certificate_defect()
        if defect is not None:
            key, cert = self._defective_signing(defect, key)
        self.ca_certificates = [c for path in config.ca for c in _load_pem_certs(path)]
        self.ca_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.ca_certificates).decode()
        if config.index is None:
            raise ConfigError("trust.index is required: the providers index")
        self.reload_trust()
        self.gestore = b.Gestore(name=config.name, domain=config.domains[0], key=key, certificate=cert,
                                 service_address=config.service_address, digest=config.digest,
                                 daticert_hook=lambda kind, d: self.faults.daticert_hook(kind, d))
        config.data_dir.mkdir(parents=True, exist_ok=True)
        power = config.durability == "power"
        self.store = Store(config.data_dir / "state.sqlite", fsync=power)
        self.store.purge(config.retention_months)
        self.maildirs = Maildirs(config.data_dir / "maildir", {a: u.quota for a, u in config.users.items()},
                                 fsync=power)
        for address in config.users:
            self.maildirs.ensure(address)
        self.scanner = Scanner(config.virus_scanner)
        self.access = AccessPoint(self)
        self.incoming = IncomingPoint(self)
        self.delivery = DeliveryPoint(self)
        self.tracker = Tracker(self)
        self.transport = Transport(self)
        self._controllers: list[Controller] = []
        self._stop = threading.Event()
        self._timer_thread: threading.Thread | None = None
        self._rogue: tuple | None = None
        self.errors: list[str] = []
        self.access_address: tuple[str, int] | None = None
        self.incoming_address: tuple[str, int] | None = None

    def _defective_signing(self, defect: str, key):
        """For a certificate fault: a certificate of the same test CA (its key beside its certificate) with
        the defect."""
        from .faults import defective_certificate

        ca_path = self.config.ca[0]
        ca_key_path = ca_path.with_name("ca.key.pem")
        if not ca_key_path.exists():
            raise ConfigError(f"certificate fault {defect}: no CA key at {ca_key_path} to issue the certificate")
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        return defective_certificate(defect, _load_pem_certs(ca_path)[0], ca_key, key, self.config.name,
                                     self.config.service_address)

    def reload_trust(self) -> None:
        """(Re)load the providers index (its signature checked) and the CRLs: the local copy of the directory,
        refreshed every `index_refresh` seconds (IDX-07) so revocations are picked up (RIC-07)."""
        config = self.config
        crls = []
        for path in config.crl:
            data = path.read_bytes()
            crls.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
        signer = _load_pem_certs(config.index_signer)[0] if config.index_signer else None
        index, signed = load_index(config.index.read_bytes(), signer)
        if signed is not None and signer is not None and not signed.signer_trusted:
            raise ConfigError(f"{config.index}: the index signature does not verify with {config.index_signer}")
        if self.faults.on("inc-crl-not-refreshed") and getattr(self, "crls", None) is not None:
            crls = self.crls  # the deviation: the CRLs loaded at start are kept for good
        self.index, self.crls = index, crls
        self._trust_loaded = time.monotonic()

    # ------------------------------------------------------------------ helpers used by the points
    def log_error(self, text: str) -> None:
        self.errors.append(text)
        print(f"[{self.config.domains[0]}] {text}", file=sys.stderr)

    def finish(self, kind: Kind, raw: bytes) -> bytes:
        """Apply the switched-on faults to a message this provider emits."""
        raw = self.faults.transform(kind, raw, self.gestore)
        if kind is Kind.BUSTA_TRASPORTO and self.faults.on("env-key-outside-index"):
            key, cert = self._rogue_credentials()
            raw = resign(raw, lambda inner: inner, key, cert, self.gestore.digest)
        return raw

    def _rogue_credentials(self):
        """A key and certificate with this provider's name and address, from a CA of its own: not in the index."""
        if self._rogue is None:
            from ..pec.pki import generate_ca, issue_provider_certificate

            ca = generate_ca("Rogue Test CA")
            self._rogue = issue_provider_certificate(ca, self.config.name, self.config.service_address)
        return self._rogue

    def _enqueue_all(self, tx, outgoing: list[Outgoing]) -> None:
        for o in outgoing:
            by_domain: dict[str, list[str]] = {}
            for r in o.rcpts:
                by_domain.setdefault(r.rpartition("@")[2].lower(), []).append(r)
            mid = o.message_id or parse_message_id(o.data)
            for rcpts in by_domain.values():
                self.store.enqueue(tx, mail_from=o.mail_from, rcpts=rcpts, data=o.data, message_id=mid,
                                   kind=str(o.kind))
                self.store.log("queued", "out", kind=str(o.kind), message_id=mid, recipients=rcpts, db=tx)

    # ------------------------------------------------------------------ the points' entries
    def submit(self, user: str, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        """A user's submission through the access point; the SMTP reply."""
        try:
            result = self.access.submit(Submission(user, mail_from, rcpts, raw))
        except Refused as exc:
            self.store.log("refused", "in", sender=mail_from, recipients=rcpts, detail=exc.reply)
            return exc.reply
        with self.store.transaction() as tx:
            self._enqueue_all(tx, result.outgoing)
            t = result.transaction
            if result.accepted:
                self.store.open_transaction(tx, result.identificativo, t.mittente, transaction_to_dict(t),
                                            result.pec_recipients, result.dispatched)
            if result.quarantine is not None:
                self.store.quarantine(result.reason or "virus", mail_from, rcpts, result.quarantine, db=tx)
            self.store.log("accepted" if result.accepted else "not-accepted", "in", pec_msgid=result.identificativo,
                           client_msgid=t.msgid, sender=t.mittente, recipients=[r.address for r in t.destinatari],
                           subject=t.oggetto, detail=result.reason, db=tx)
        self.transport.wake()
        return f"250 2.0.0 OK {result.identificativo}"

    def receive(self, mail_from: str, rcpts: list[str], raw: bytes, peer: str = "") -> str:
        """A message at the incoming point; the SMTP reply."""
        try:
            result = self.incoming.process(mail_from, rcpts, raw, peer=peer)
        except Refused as exc:
            self.store.log("refused", "in", sender=mail_from, recipients=rcpts, detail=exc.reply, peer=peer)
            return exc.reply
        extra: list[Outgoing] = []
        for notice in result.virus_notices:
            made = self.tracker.virus_notice(notice)
            if made is not None:
                extra.append(Outgoing(self.config.service_address, made[0], made[1], Kind.MANCATA_CONSEGNA_VIRUS))
        now = time.time()
        with self.store.transaction() as tx:
            self._enqueue_all(tx, result.outgoing + extra)
            for reason, data in result.quarantine:
                self.store.quarantine(reason, mail_from, rcpts, data, db=tx)
            for event, kind, who in result.events:
                self.store.log(event, "in", kind=str(kind) if kind else None, sender=mail_from, recipients=who,
                               peer=peer, db=tx)
            for identificativo, who, field in result.tracking:
                self.store.record_receipt(identificativo, who, field, now, db=tx)
        if result.outgoing or extra:
            self.transport.wake()
        return "250 2.0.0 OK"

    def local_delivery(self, mail_from: str, rcpts: list[str], data: bytes, kind: str | None = None) -> None:
        """Our own domains: an envelope goes through our incoming and delivery points (GEN-10), a notice
        to our service mailbox through the incoming point; our own notices to our own users go straight
        into their mailboxes, as they were made."""
        service = self.config.receipt_mailbox.lower()
        users = [r for r in rcpts if r.lower() != service]
        if kind != str(Kind.BUSTA_TRASPORTO) and users and len(users) == len(rcpts):
            for user in users:
                if self.config.users.get(user.lower()) is not None:
                    self.delivery.deliver_unchanged(user.lower(), data)
            self._track_own_notice(kind, data)
            return
        reply = self.receive(mail_from, rcpts, data, peer="local")
        if not reply.startswith("250"):
            self.store.log("local-refused", "local", recipients=rcpts, detail=reply)

    def _track_own_notice(self, kind: str | None, data: bytes) -> None:
        """A receipt we issued for a message of our own users (same provider, GEN-10) also clears timers."""
        field = {str(Kind.CONSEGNA_COMPLETA): "consegna_at", str(Kind.CONSEGNA_BREVE): "consegna_at",
                 str(Kind.CONSEGNA_SINTETICA): "consegna_at", str(Kind.MANCATA_CONSEGNA): "closed",
                 str(Kind.MANCATA_CONSEGNA_VIRUS): "closed"}.get(kind or "")
        if field is None:
            return
        d = parse_message(data).daticert
        if d is not None and d.consegna:
            self.store.record_receipt(d.identificativo, [d.consegna], field, time.time())

    # ------------------------------------------------------------------ servers
    def _tls_context(self) -> ssl.SSLContext:
        if self.config.tls_certificate is None or self.config.tls_key is None:
            raise ConfigError("tls.certificate and tls.key are required: the access point requires STARTTLS")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.config.tls_certificate), str(self.config.tls_key))
        return ctx

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = self.config.users.get(auth_data.login.decode("utf-8", "replace").lower())
        ok = user is not None and hmac.compare_digest(user.password.encode(), auth_data.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> None:
        tls = self._tls_context()
        host, port = self.config.access
        port = port or free_port(host)
        f = self.faults
        clear = f.on("acc-auth-in-clear") or f.on("acc-open-submission")
        access = Controller(_AccessHandler(self), hostname=host, port=port,
                            tls_context=None if f.on("acc-no-starttls") else tls,
                            require_starttls=not (clear or f.on("acc-no-starttls")),
                            auth_required=not (f.on("acc-no-auth-required") or f.on("acc-open-submission")),
                            auth_require_tls=not (clear or f.on("acc-no-starttls")), authenticator=self._authenticator,
                            data_size_limit=None if f.on("acc-no-further-bound") else self.config.limits.max_message_size,
                            ident="PEC reference access point",
                            server_hostname=self.config.domains[0])
        access.start()
        self.access_address = (host, port)
        ihost, iport = self.config.incoming
        iport = iport or free_port(ihost)
        incoming = Controller(_IncomingHandler(self), hostname=ihost, port=iport,
                              tls_context=None if self.faults.on("inc-no-starttls") else tls,
                              require_starttls=False, data_size_limit=self.config.limits.max_message_size,
                              ident="PEC reference incoming point", server_hostname=self.config.domains[0])
        incoming.start()
        self.incoming_address = (ihost, iport)
        self._controllers = [access, incoming]
        self.transport.start()
        self._timer_thread = threading.Thread(target=self._timers, name="timers", daemon=True)
        self._timer_thread.start()

    def _timers(self) -> None:
        while not self._stop.wait(self.config.timers.scheduler_interval):
            try:
                self.tracker.tick()
            except Exception as exc:
                self.log_error(f"timers: {exc!r}")
            if time.monotonic() - self._trust_loaded >= self.config.index_refresh \
                    and not self.faults.on("idx-never-refreshed"):
                try:
                    self.reload_trust()
                except Exception as exc:  # keep the last good copy (a broken publication must not blind us)
                    self._trust_loaded = time.monotonic()
                    self.log_error(f"index refresh: {exc!r}")

    def stop(self) -> None:
        self._stop.set()
        for c in self._controllers:
            try:
                c.stop()
            except Exception as exc:  # already stopped, loop closed
                self.log_error(f"stopping a server: {exc!r}")
        self._controllers = []
        self.transport.stop()
        if self._timer_thread is not None:
            self._timer_thread.join(5)
        self.store.close()

    def __enter__(self) -> ReferenceProvider:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode("ascii", "replace")
    return None


class _AccessHandler:
    def __init__(self, provider: ReferenceProvider):
        self.p = provider

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if len(envelope.rcpt_tos) >= max(self.p.config.limits.max_recipients * 2, 100):
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode("utf-8", "replace") if session.auth_data else ""
        if not login and (self.p.faults.on("acc-no-auth-required") or self.p.faults.on("acc-open-submission")):
            login = envelope.mail_from or ""  # the deviation: whoever connects is taken at their word
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.p.submit, login, envelope.mail_from,
                                              list(envelope.rcpt_tos), envelope.content)
        except ScannerError as exc:
            return f"451 4.3.0 virus scanner unavailable: {exc}"
        except Exception as exc:  # never let one message take the server down
            self.p.log_error(f"access: {exc!r}")
            return "451 4.3.0 temporary failure, try again later"


class _IncomingHandler:
    def __init__(self, provider: ReferenceProvider):
        self.p = provider

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        problem = self.p.incoming.check_recipient(address)
        if problem:
            return problem
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        loop = asyncio.get_running_loop()
        peer = str(session.peer[0]) if session.peer else ""
        try:
            return await loop.run_in_executor(None, self.p.receive, envelope.mail_from, list(envelope.rcpt_tos),
                                              envelope.content, peer)
        except ScannerError as exc:
            return f"451 4.3.0 virus scanner unavailable: {exc}"
        except Exception as exc:
            self.p.log_error(f"incoming: {exc!r}")
            return "451 4.3.0 temporary failure, try again later"


def serve(config_path: Path, faults: list[str] | None = None, *, ready_file: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    config = load_config(config_path)
    provider = ReferenceProvider(config, faults if faults else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    provider.start()
    a, i = provider.access_address, provider.incoming_address
    print(f"{config.name}: access point {a[0]}:{a[1]} (STARTTLS + AUTH), incoming point {i[0]}:{i[1]}; "
          f"faults: {', '.join(f.name for f in provider.faults.active) or 'none'}", flush=True)
    if ready_file is not None:
        ready_file.write_text(f"{a[0]}:{a[1]} {i[0]}:{i[1]}\n")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        provider.stop()
    print(f"{config.name}: stopped", flush=True)
    return 0

"""Test harness for the reference provider: a deployment of real providers on loopback.

Two providers (alfa, beta) exchange real SMTP with STARTTLS; a third index entry (silente) routes to a
sink that accepts envelopes and never answers (drives the 12 h / 24 h notices); an external sink
stands for ordinary Internet mail. Every wait has a deadline.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import check
from conformance.pec.parse import parse_message
from conformance.reference.config import load_config
from conformance.reference.deploy import DEFAULT_PLANS, ProviderPlan, write_deployment
from conformance.reference.provider import ReferenceProvider, free_port

ALFA_USER, ALFA_PASSWORD = "mario.rossi@pec.alfa.test", "alfa-secret-1"
ALFA_USER2 = "giulia.neri@pec.alfa.test"
BETA_USER, BETA_USER2 = "anna.bianchi@pec.beta.test", "luigi.verdi@cert.beta.test"
SILENT_USER = "utente@pec.silente.test"
EXTERNAL_USER = "carlo.neri@example.org"
FAST_TIMERS = {"preavviso": 2.0, "timeout": 4.0, "window_start": 3.0, "scheduler_interval": 0.1,
               "retry_interval": 0.3}
SLOW_TIMERS = {"preavviso": 3600.0, "timeout": 7200.0, "window_start": 6000.0, "scheduler_interval": 0.2,
               "retry_interval": 0.3}


class Sink:
    """An SMTP server that stores what it gets (plain SMTP; STARTTLS offered when given a context)."""

    def __init__(self, tls: ssl.SSLContext | None = None, port: int | None = None):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()
        port = port or free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=port, tls_context=tls)
        self.address = ("127.0.0.1", port)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


def silent_plan() -> ProviderPlan:
    return ProviderPlan("Gestore Silente S.p.A.", ("pec.silente.test",), {SILENT_USER: "x"})


@dataclass
class Deployment:
    directory: Path
    alfa: ReferenceProvider
    beta: ReferenceProvider
    silent: Sink
    external: Sink
    ca_file: Path
    started: list = field(default_factory=list)

    def stop(self):
        for p in (self.alfa, self.beta):
            p.stop()
        self.silent.stop()
        self.external.stop()

    def tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.check_hostname = False
        return ctx

    def submit(self, raw: bytes, rcpts: list[str], *, provider=None, user=ALFA_USER, password=ALFA_PASSWORD,
               mail_from: str | None = None) -> str:
        provider = provider or self.alfa
        with smtplib.SMTP(*provider.access_address, timeout=15) as s:
            s.starttls(context=self.tls())
            s.login(user, password)
            try:
                s.sendmail(mail_from or user, rcpts, raw)
            except smtplib.SMTPResponseException as exc:
                return f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
            except smtplib.SMTPRecipientsRefused as exc:
                return str(exc.recipients)
        return "250"

    def inject(self, provider, mail_from: str, rcpts: list[str], raw: bytes, *, starttls: bool = True) -> str:
        """Hand a message to a provider's incoming point, as another provider or the Internet would."""
        with smtplib.SMTP(*provider.incoming_address, timeout=15) as s:
            s.ehlo()
            if starttls:
                s.starttls(context=self.tls())
            try:
                s.sendmail(mail_from, rcpts, raw)
            except smtplib.SMTPResponseException as exc:
                return f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
            except smtplib.SMTPRecipientsRefused as exc:
                return str(exc.recipients)
        return "250"

    def mailbox(self, provider, user: str) -> list[bytes]:
        return provider.maildirs.messages(user)

    def wait(self, predicate, deadline: float = 10.0, poll: float = 0.05):
        """Poll until predicate() is truthy or the deadline passes; returns its last value."""
        end = time.monotonic() + deadline
        while True:
            value = predicate()
            if value or time.monotonic() >= end:
                return value
            time.sleep(poll)

    def wait_kind(self, provider, user: str, kind, count: int = 1, deadline: float = 10.0) -> list[bytes]:
        def found():
            got = [m for m in self.mailbox(provider, user) if parse_message(m).kind is kind]
            return got if len(got) >= count else None
        return self.wait(found, deadline) or [m for m in self.mailbox(provider, user)
                                              if parse_message(m).kind is kind]

    def idle(self, deadline: float = 10.0) -> bool:
        """Wait until both outboxes are empty."""
        return bool(self.wait(lambda: self.alfa.store.pending_count() == 0 and self.beta.store.pending_count() == 0,
                              deadline))

    def sent(self, provider, kind=None) -> list[bytes]:
        return [data for _, data in provider.store.sent_messages(str(kind) if kind else None)]

    def context(self, provider, **kw) -> ValidationContext:
        return ValidationContext(index=provider.index, ca_certificates=provider.ca_certificates, crls=provider.crls,
                                 **kw)

    def validate(self, raw: bytes, provider=None, **kw):
        return check(raw, self.context(provider or self.alfa, **kw))


def deploy(directory: Path, *, alfa_faults=(), beta_faults=(), timers=None, quotas=None) -> Deployment:
    external = Sink().start()
    plans = [
        ProviderPlan(DEFAULT_PLANS[0].name, DEFAULT_PLANS[0].domains, dict(DEFAULT_PLANS[0].users),
                     list(alfa_faults)),
        ProviderPlan(DEFAULT_PLANS[1].name, DEFAULT_PLANS[1].domains, dict(DEFAULT_PLANS[1].users),
                     list(beta_faults), dict(quotas or {})),
        silent_plan(),
    ]
    paths = write_deployment(directory, plans, timers=timers or SLOW_TIMERS, external_route=external.address)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(directory / "pki" / "tls" / "cert.pem"), str(directory / "pki" / "tls" / "key.pem"))
    silent = Sink(tls).start()
    configs = [load_config(p) for p in paths[:2]]
    for c in configs:
        c.routes["pec.silente.test"] = silent.address
    alfa, beta = ReferenceProvider(configs[0]), ReferenceProvider(configs[1])
    alfa.start()
    beta.start()
    return Deployment(directory, alfa, beta, silent, external, directory / "pki" / "ca" / "ca.pem")


def fails(result, requirement: str) -> bool:
    return any(f.verdict is Verdict.FAIL and requirement in f.requirements for f in result.findings)


def warns(result, requirement: str) -> bool:
    return any(f.verdict is Verdict.WARN and requirement in f.requirements for f in result.findings)


def no_fail(result) -> list[str]:
    return [f"{f.check} {f.requirements} {f.message} [{f.expected} / {f.actual}]" for f in result.findings
            if f.verdict in (Verdict.FAIL, Verdict.ERROR)]

"""Outbound transport: the outbox worker.

Local recipients (our domains) are handed to our own incoming point, so a message inside one
provider gets the full PEC processing (GEN-10); other domains go over SMTP to the route of their
domain, with STARTTLS, which is required towards PEC providers of the index (SEC-03). Every
attempt has a timeout; failures are retried until the idle limit (TMO-01), then dropped.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections import defaultdict

from .store import OutboxItem


class Transport:
    def __init__(self, provider):
        self.p = provider
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client_tls = ssl.create_default_context(cadata=provider.ca_pem or None)
        if not provider.ca_pem:
            self.client_tls.load_default_certs()
        self.client_tls.check_hostname = False  # loopback routes are IP addresses; the chain is still checked

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.p.config.domains[0]}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception as exc:  # the worker must survive anything a peer does
                self.p.log_error(f"outbox worker: {exc!r}")
                sent = 0
            if not sent:
                self._wake.wait(self.p.config.timers.retry_interval / 5)
                self._wake.clear()

    def run_once(self, now: float | None = None) -> int:
        items = self.p.store.due(now or time.time())
        for item in items:
            if self._stop.is_set():
                break
            self._attempt(item)
        return len(items)

    def _attempt(self, item: OutboxItem) -> None:
        p = self.p
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in item.rcpts:
            by_domain[rcpt.rpartition("@")[2].lower()].append(rcpt)
        failures: list[str] = []
        permanent: list[str] = []
        for domain, rcpts in by_domain.items():
            try:
                if domain in p.config.domains:
                    p.local_delivery(item.mail_from, rcpts, item.data)
                else:
                    permanent += self._smtp(domain, item.mail_from, rcpts, item.data)
            except Exception as exc:
                failures.append(f"{domain}: {exc}")
        if not failures:
            p.store.mark_sent(item.id)
            p.store.log("sent", "out", kind=item.kind, message_id=item.message_id, recipients=item.rcpts,
                        detail="; ".join(permanent) or None)
            return
        give_up = time.time() - item.created > p.config.timers.give_up_after
        delay = min(p.config.timers.retry_interval * (2 ** min(item.attempts, 6)), 3600)
        p.store.mark_retry(item.id, "; ".join(failures), time.time() + delay, give_up)

    def _smtp(self, domain: str, mail_from: str, rcpts: list[str], data: bytes) -> list[str]:
        """Deliver over SMTP; returns permanently refused recipients; raises to retry later."""
        route = self.p.config.route_for(domain)
        if route is None:
            raise OSError(f"no route for {domain}")
        host, port = route
        with smtplib.SMTP(host, port, timeout=30, local_hostname=self.p.config.domains[0]) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=self.client_tls)
                smtp.ehlo()
            elif self.p.index.is_pec_domain(domain):
                raise OSError(f"{host}:{port} offers no STARTTLS; PEC is not sent in clear (SEC-03)")
            try:
                refused = smtp.sendmail(mail_from, rcpts, data)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            except smtplib.SMTPResponseException as exc:
                if 500 <= exc.smtp_code < 600:
                    return [f"{r}: {exc.smtp_code} {exc.smtp_error!r}" for r in rcpts]
                raise
        permanent = []
        for rcpt, (code, text) in refused.items():
            if 400 <= code < 500:
                raise OSError(f"{rcpt}: {code} {text!r}")
            permanent.append(f"{rcpt}: {code} {text!r}")
        return permanent

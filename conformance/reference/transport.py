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
    def __init__(self, provider, workers: int = 4):
        self.p = provider
        self.workers = workers
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._local = threading.local()  # per worker: open SMTP sessions by route, reused while they live
        self.client_tls = ssl.create_default_context(cadata=provider.ca_pem or None)
        if not provider.ca_pem:
            self.client_tls.load_default_certs()
        self.client_tls.check_hostname = False  # loopback routes are IP addresses; the chain is still checked

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"outbox-{self.p.config.domains[0]}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self.p.store.claim(time.time())
                    if item is not None:
                        self._attempt(item)
                        continue
                except Exception as exc:  # the worker must survive anything a peer does
                    self.p.log_error(f"outbox worker: {exc!r}")
                self._close_idle(time.monotonic() - 5.0)
                with self._wake:
                    self._wake.wait(self.p.config.timers.retry_interval / 5)
        finally:
            self._close_idle(float("inf"))

    def _sessions(self) -> dict:
        if not hasattr(self._local, "sessions"):
            self._local.sessions = {}
        return self._local.sessions

    def _close_idle(self, before: float) -> None:
        sessions = self._sessions()
        for route, (smtp, used) in list(sessions.items()):
            if used < before:
                del sessions[route]
                try:
                    smtp.quit()
                except (OSError, smtplib.SMTPException):
                    smtp.close()

    def _session(self, domain: str, host: str, port: int) -> smtplib.SMTP:
        """An open SMTP session to the route (STARTTLS done), reused across messages of this worker."""
        sessions = self._sessions()
        cached = sessions.pop((host, port), None)
        if cached is not None:
            smtp = cached[0]
            try:
                if smtp.noop()[0] == 250:
                    return smtp
            except (OSError, smtplib.SMTPException):
                pass
            smtp.close()
        smtp = smtplib.SMTP(host, port, timeout=30, local_hostname=self.p.config.domains[0])
        try:
            smtp.ehlo()
            if self.p.faults.on("trn-plain-to-peer"):
                pass  # the deviation: the session stays in clear whatever the peer offers
            elif smtp.has_extn("starttls"):
                smtp.starttls(context=self.client_tls)
                smtp.ehlo()
            elif self.p.index.is_pec_domain(domain):
                raise OSError(f"{host}:{port} offers no STARTTLS; PEC is not sent in clear (SEC-03)")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def run_once(self, now: float | None = None) -> int:
        """Send everything due now, in this thread (tests and tools)."""
        n = 0
        while (item := self.p.store.claim(now or time.time())) is not None:
            self._attempt(item)
            n += 1
        return n

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
                    p.local_delivery(item.mail_from, rcpts, item.data, item.kind)
                else:
                    permanent += self._smtp(domain, item.mail_from, rcpts, item.data)
            except Exception as exc:
                failures.append(f"{domain}: {exc}")
        if not failures:
            p.store.mark_sent(item.id, {"event": "sent", "direction": "out", "kind": item.kind,
                                        "message_id": item.message_id, "recipients": item.rcpts,
                                        "detail": "; ".join(permanent) or None})
            return
        delay = min(p.config.timers.retry_interval * (2 ** min(item.attempts, 6)), 3600)
        # Give up when the next attempt would fall past the idle limit: no retry after it (TMO-01).
        give_up = time.time() + delay - item.created > p.config.timers.give_up_after
        if p.faults.on("trk-retry-forever"):
            give_up, delay = False, p.config.timers.retry_interval
        p.store.mark_retry(item.id, "; ".join(failures), time.time() + delay, give_up)

    def _smtp(self, domain: str, mail_from: str, rcpts: list[str], data: bytes) -> list[str]:
        """Deliver over SMTP; returns permanently refused recipients; raises to retry later."""
        route = self.p.config.route_for(domain)
        if route is None:
            raise OSError(f"no route for {domain}")
        host, port = route
        smtp = self._session(domain, host, port)
        try:
            refused = smtp.sendmail(mail_from, rcpts, data)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
            smtp.rset()
        except smtplib.SMTPResponseException as exc:
            smtp.close()
            if 500 <= exc.smtp_code < 600:
                return [f"{r}: {exc.smtp_code} {exc.smtp_error!r}" for r in rcpts]
            raise
        except (OSError, smtplib.SMTPException):
            smtp.close()
            raise
        self._sessions()[(host, port)] = (smtp, time.monotonic())
        permanent = []
        for rcpt, (code, text) in refused.items():
            if 400 <= code < 500:
                raise OSError(f"{rcpt}: {code} {text!r}")
            permanent.append(f"{rcpt}: {code} {text!r}")
        return permanent

"""An ordinary (non-PEC) mail domain: where the target sends what its users address to the Internet
(the transport envelope for a non-PEC recipient, ENV-15), and a source of ordinary mail into the
target's incoming point (anomaly handling, ANO-*).

The server records every transaction after the evidence hook has stored it and before it answers
`250`; STARTTLS is offered when a TLS context is given, plain SMTP is always accepted.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from . import forge
from .smtp import Evidence, Received, Recorder, SmtpOutcome, client_context, smtp_send

__all__ = ["OrdinaryDomain", "Received", "SmtpOutcome"]


class OrdinaryDomain(Recorder):
    def __init__(self, domains: str | Sequence[str] = ("example.org",), *, target_incoming: tuple[str, int] | None = None,
                 tls_context: ssl.SSLContext | None = None, client_tls: ssl.SSLContext | None = None,
                 evidence: Evidence | None = None, host: str = "127.0.0.1", port: int = 0):
        """`domains`: the mail domains it accepts mail for (empty: any address)."""
        domains = (domains,) if isinstance(domains, str) else tuple(domains)
        super().__init__(domains=domains, tls_context=tls_context, evidence=evidence, host=host, port=port,
                         ident="PEC conformance ordinary mail domain", point="ordinary")
        self.target_incoming = target_incoming
        self.client_tls = client_tls or client_context()

    def start(self) -> OrdinaryDomain:
        self.start_server()
        return self

    def stop(self) -> None:
        self.stop_server()

    def __enter__(self) -> OrdinaryDomain:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def send(self, mail_from: str, rcpts: list[str], raw: bytes, *, starttls: bool = False,
             to: tuple[str, int] | None = None, timeout: float = 30) -> SmtpOutcome:
        """Ordinary mail into the target's incoming point (or `to`), plain SMTP unless `starttls`;
        never raises on network errors (code 0). The evidence hook sees the message first."""
        target = to or self.target_incoming
        if target is None:
            return SmtpOutcome(0, "no target incoming point configured", False, ["! no target"])
        if self.evidence is not None:
            meta = {"point": "ordinary", "kind": "ordinary", "mail_from": mail_from, "rcpts": list(rcpts),
                    "to": f"{target[0]}:{target[1]}"}
            try:
                self.evidence("out", raw, meta)
            except Exception as exc:
                return SmtpOutcome(0, f"evidence hook failed, nothing sent: {exc!r}", False,
                                   ["! evidence hook failed"])
        helo = self.domains[0] if self.domains else "localhost"
        return smtp_send(target[0], target[1], mail_from, rcpts, raw, starttls=starttls, client_tls=self.client_tls,
                         helo=helo, timeout=timeout)

    def send_ordinary(self, sender: str, rcpts: list[str], subject: str, **kwargs) -> tuple[bytes, SmtpOutcome]:
        """Make a plain message (`forge.ordinary`) and send it; returns the bytes and the outcome."""
        raw = forge.ordinary(sender, rcpts, subject)
        return raw, self.send(sender, rcpts, raw, **kwargs)

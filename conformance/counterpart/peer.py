"""The counterpart: a simulated PEC provider the suite plays against the target.

It has its own PEC domain(s), signing key and certificate and an entry in the providers index the
target trusts. Its incoming point (an aiosmtpd server: STARTTLS offered and accepted, plain accepted
too) records every transaction, after the evidence hook has stored it and before it answers `250`.
A transport envelope for one of its users, once its origin is verified (`verify_origin` with the
index, the CAs and the CRLs), gets the answer of the behaviour chosen for that recipient:

- ``normal``: one presa in carico per SMTP transaction to the sending provider's mailReceipt (from
  the index, decision D21), then per recipient an avvenuta consegna in the variant asked for
  (X-TipoRicevuta, else daticert ricevuta; sintetica for a recipient only in Cc) to the original sender;
- ``silent``: nothing (drives the target's 12 h and 24 h notices);
- ``presa-only``: the presa in carico, no consegna (drives the 24 h notice alone);
- ``reject-recipient``: presa in carico, then an avviso di mancata consegna (no-dest, 5.1.1);
- ``virus-found``: presa in carico, then one rilevazione virus per recipient to the mailReceipt;
- ``delayed``: like normal, `delay` seconds later (a scheduler thread; `stop()` cancels what is pending).
  A `delay` given with another behaviour postpones its answer the same way.

Recipients of one transaction with different behaviours are answered per behaviour, each group with
its own presa in carico. Everything else (notices from the target for messages the counterpart sent,
anomaly envelopes, ordinary mail, envelopes that fail verification) is only recorded. Answers go to
the target's incoming point with `send`, which never raises and returns the SMTP transcript.
"""

from __future__ import annotations

import heapq
import itertools
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..pec.constants import Kind
from ..pec.index import ProvidersIndex
from ..pec.parse import ParsedMessage
from ..pec.pki import PkiLayout, ProviderCredentials
from ..pec.verify import verify_origin
from . import forge
from .smtp import Evidence, Received, Recorder, SmtpOutcome, client_context, smtp_send

__all__ = ["BEHAVIOURS", "Behaviour", "Counterpart", "Received", "Sent", "SmtpOutcome"]

NORMAL = "normal"
SILENT = "silent"
PRESA_ONLY = "presa-only"
REJECT_RECIPIENT = "reject-recipient"
VIRUS_FOUND = "virus-found"
DELAYED = "delayed"
DEFER = "defer"  # answers 451 at RCPT TO, forever: the target must keep trying, then give up (TMO-01)
BEHAVIOURS = (NORMAL, SILENT, PRESA_ONLY, REJECT_RECIPIENT, VIRUS_FOUND, DELAYED, DEFER)


@dataclass(frozen=True)
class Behaviour:
    """How the counterpart answers an envelope for a recipient. `transform`, when given, is applied to
    every notice of the answer before it is sent (e.g. `forge.bad_signature`: forged receipts)."""

    name: str = NORMAL
    delay: float = 0.0
    transform: Callable[[bytes], bytes] | None = None


@dataclass
class Sent:
    """A message the counterpart sent (or tried to send) to the target."""

    at: float
    kind: str
    mail_from: str
    rcpts: list[str]
    raw: bytes
    outcome: SmtpOutcome
    related: str | None = None  # the identificativo of the transaction it answers
    transformed: bool = False  # altered by the behaviour's transform (a forged answer)


class _Scheduler:
    """One thread running due actions in order; `stop()` drops what is still pending."""

    def __init__(self, name: str, on_error: Callable[[str], None]):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._running = 0
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._seq), action))
            self._cond.notify_all()

    def pending(self) -> int:
        """Actions scheduled or running."""
        with self._cond:
            return len(self._heap) + self._running

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                    self._cond.wait(max(min(wait, 1.0), 0.001))
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._heap)
                self._running += 1
            try:
                action()
            except Exception as exc:  # one failed answer must not stop the others
                self._on_error(f"scheduled action: {exc!r}")
            finally:
                with self._cond:
                    self._running -= 1


class Counterpart(Recorder):
    def __init__(self, credentials: ProviderCredentials, *, index: ProvidersIndex, ca_certificates: list,
                 crls: list, tls_context: ssl.SSLContext, target_incoming: tuple[str, int] | None = None,
                 client_tls: ssl.SSLContext | None = None, evidence: Evidence | None = None,
                 host: str = "127.0.0.1", port: int = 0, users: list[str] | None = None, digest: str = "sha256"):
        super().__init__(domains=tuple(credentials.domains), tls_context=tls_context, evidence=evidence, host=host,
                         port=port, ident=f"PEC conformance counterpart ({credentials.provider_name})",
                         point="counterpart")
        self.credentials = credentials
        self.index = index
        self.ca_certificates = list(ca_certificates)
        self.crls = list(crls)
        self.target_incoming = target_incoming
        if client_tls is None:
            pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.ca_certificates
                          if isinstance(c, x509.Certificate))
            client_tls = client_context(pem or None)
        self.client_tls = client_tls
        self.users = None if users is None else {u.lower() for u in users}
        self.digest = digest
        self.sent: list[Sent] = []
        self.deferred: list[tuple[float, str]] = []  # (monotonic time, recipient) of every 451 given
        self._default = Behaviour()
        self._per_recipient: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._scheduler: _Scheduler | None = None

    @classmethod
    def from_layout(cls, layout: PkiLayout, provider_name: str, **kwargs) -> Counterpart:
        """A counterpart with a provider of a test PKI: its credentials, the index, the CA and the CRL."""
        return cls(layout.provider(provider_name), index=layout.index, ca_certificates=[layout.ca.certificate],
                   crls=[layout.crl], **kwargs)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Counterpart:
        if self._scheduler is None:
            self._scheduler = _Scheduler(f"counterpart-{self.credentials.domains[0]}", self.errors.append)
            self._scheduler.start()
        self.start_server()
        return self

    def stop(self) -> None:
        """Stop the server and cancel every answer not yet sent (delayed ones included)."""
        self.stop_server()
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None

    def __enter__(self) -> Counterpart:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def receipt_mailbox(self) -> str:
        return self.credentials.receipt_mailbox

    @property
    def service_address(self) -> str:
        return self.credentials.service_address

    def pending(self) -> int:
        """Answers scheduled or being sent."""
        return self._scheduler.pending() if self._scheduler is not None else 0

    # ------------------------------------------------------------------ behaviours
    def set_behaviour(self, name: str, *, delay: float = 0.0, recipients: list[str] | None = None,
                      transform: Callable[[bytes], bytes] | None = None) -> None:
        """The answer to envelopes: for every recipient, or only for `recipients` when given."""
        if name not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {name!r}; choose one of {', '.join(BEHAVIOURS)}")
        behaviour = Behaviour(name, float(delay), transform)
        with self._lock:
            if recipients is None:
                self._default = behaviour
            else:
                for r in recipients:
                    self._per_recipient[r.lower()] = behaviour

    def reset_behaviours(self) -> None:
        with self._lock:
            self._default = Behaviour()
            self._per_recipient.clear()

    def behaviour_for(self, recipient: str) -> Behaviour:
        with self._lock:
            return self._per_recipient.get(recipient.lower(), self._default)

    def is_user(self, address: str) -> bool:
        a = address.lower()
        if a in (self.receipt_mailbox.lower(), self.service_address.lower()):
            return False
        if self.users is not None:
            return a in self.users
        return a.rpartition("@")[2] in self.domains

    # ------------------------------------------------------------------ receiving
    def accept(self, mail_from: str, rcpts: list[str], raw: bytes, tls: bool, peer: str) -> str:
        reply, item = self.record(mail_from, rcpts, raw, tls, peer)
        if item is None:
            return reply
        msg = item.message
        try:
            item.origin = verify_origin(msg, self.index, self.ca_certificates, self.crls, datetime.now(UTC))
        except Exception as exc:  # hostile bytes: record the message all the same, unverified
            self.errors.append(f"verifying a message from {mail_from!r}: {exc!r}")
        users = [r.lower() for r in rcpts if self.is_user(r) or self._unknown_local(r)]
        plan: dict[Behaviour, list[str]] = {}
        if msg.kind is Kind.BUSTA_TRASPORTO and item.verified and msg.daticert is not None and users:
            for r in users:
                plan.setdefault(self.behaviour_for(r), []).append(r)
            item.behaviour = ",".join(sorted({bh.name for bh in plan}))
        else:
            item.behaviour = "recorded"
        self.append(item)
        for behaviour, group in plan.items():
            if behaviour.name == SILENT:
                continue
            self._schedule(behaviour.delay, lambda bh=behaviour, g=group: self._answer(item, bh, g))
        return reply

    def rcpt_reply(self, address: str) -> str | None:
        """A temporary refusal for recipients whose behaviour is `defer`."""
        if self.behaviour_for(address).name == DEFER:
            with self._cond:
                self.deferred.append((time.monotonic(), address.lower()))
            return "451 4.2.0 mailbox temporarily unavailable, try again later"
        return None

    def _unknown_local(self, address: str) -> bool:
        """An address of our domains that is no user (with a user list): it gets a mancata consegna."""
        a = address.lower()
        return (self.users is not None and a.rpartition("@")[2] in self.domains
                and a not in (self.receipt_mailbox.lower(), self.service_address.lower()))

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        if self._scheduler is None:
            raise RuntimeError("the counterpart is not started")
        self._scheduler.schedule(delay, action)

    def _answer(self, item: Received, behaviour: Behaviour, recipients: list[str]) -> None:
        """Build and send the notices of one behaviour for some recipients of a received envelope."""
        msg: ParsedMessage = item.message
        d = msg.daticert
        creds, digest = self.credentials, self.digest
        sender_domain = d.mittente.rpartition("@")[2] or item.mail_from.rpartition("@")[2]
        mailbox = self.index.receipt_mailbox_for(item.origin.certificate_der, sender_domain)
        notices: list[tuple[str, str, bytes]] = []  # (kind, rcpt, bytes)
        if mailbox is not None:
            notices.append((str(Kind.PRESA_IN_CARICO), mailbox,
                            forge.presa_in_carico(creds, msg, mailbox, recipients, digest=digest)))
        else:
            self.errors.append(f"{d.identificativo}: no mailReceipt in the index for the signer; no presa in carico")
        name = behaviour.name
        for r in recipients:
            # An address given its own behaviour is one of ours for this run, whatever the user list says.
            unknown = self.users is not None and r not in self.users and r not in self._per_recipient
            if name == REJECT_RECIPIENT or (unknown and name in (NORMAL, DELAYED)):
                notices.append((str(Kind.MANCATA_CONSEGNA), d.mittente, forge.mancata_consegna(creds, msg, r,
                                                                                               digest=digest)))
            elif name in (NORMAL, DELAYED):
                variant = forge.variant_for(msg, r)
                kind = {"completa": Kind.CONSEGNA_COMPLETA, "breve": Kind.CONSEGNA_BREVE,
                        "sintetica": Kind.CONSEGNA_SINTETICA}[variant]
                notices.append((str(kind), d.mittente, forge.consegna(creds, msg, r, variant, digest=digest)))
            elif name == VIRUS_FOUND and mailbox is not None:
                notices.append((str(Kind.RILEVAZIONE_VIRUS), mailbox,
                                forge.rilevazione_virus(creds, msg, r, mailbox, digest=digest)))
        for kind, rcpt, raw in notices:
            if behaviour.transform is not None:
                raw = behaviour.transform(raw)
            self._send_recorded(kind, self.service_address, [rcpt], raw, related=d.identificativo,
                                transformed=behaviour.transform is not None)

    # ------------------------------------------------------------------ sending
    def _send_recorded(self, kind: str, mail_from: str, rcpts: list[str], raw: bytes, *, related: str | None = None,
                       transformed: bool = False, starttls: bool = True, to: tuple[str, int] | None = None,
                       timeout: float = 30) -> SmtpOutcome:
        target = to or self.target_incoming
        if target is None:
            outcome = SmtpOutcome(0, "no target incoming point configured", False, ["! no target"])
        else:
            meta = {"point": "counterpart", "kind": kind, "mail_from": mail_from, "rcpts": list(rcpts),
                    "to": f"{target[0]}:{target[1]}", "related": related, "at": time.time()}
            try:
                if self.evidence is not None:
                    self.evidence("out", raw, meta)
            except Exception as exc:
                outcome = SmtpOutcome(0, f"evidence hook failed, nothing sent: {exc!r}", False,
                                      ["! evidence hook failed"])
            else:
                outcome = smtp_send(target[0], target[1], mail_from, rcpts, raw, starttls=starttls,
                                    client_tls=self.client_tls, helo=self.credentials.domains[0], timeout=timeout)
        with self._cond:
            self.sent.append(Sent(time.time(), kind, mail_from, list(rcpts), raw, outcome, related, transformed))
            self._cond.notify_all()
        if not outcome.ok and related is not None:  # an answer of a behaviour that did not go through
            self.errors.append(f"sending {kind} to {rcpts}: {outcome.code} {outcome.text}")
        return outcome

    def send(self, mail_from: str, rcpts: list[str], raw: bytes, *, starttls: bool = True,
             to: tuple[str, int] | None = None, timeout: float = 30, kind: str = "sent") -> SmtpOutcome:
        """One SMTP transaction to the target's incoming point (or `to`); never raises on network errors
        (code 0 and the error in `text`). The message is handed to the evidence hook first (`kind` labels
        it there and in `sent`, e.g. "forgery:unsigned")."""
        return self._send_recorded(kind, mail_from, rcpts, raw, starttls=starttls, to=to, timeout=timeout)

    def sent_matching(self, predicate: Callable[[Sent], bool]) -> list[Sent]:
        with self._cond:
            return [s for s in self.sent if predicate(s)]

"""Flows for the fault tests: each runs one deployment of the reference providers, lets every message
settle (both outboxes idle, checked repeatedly, every wait with a deadline), and returns a `Run`: a
snapshot of what the providers sent, what every mailbox and sink holds, the SMTP replies and the
sender side's timers. The probes of tests/test_reference_faults.py read the snapshot after the
deployment has stopped.

Faults go to the provider whose point they belong to: access and tracking faults to alfa (the sender
side), incoming and delivery faults to beta (the recipient side).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from refharness import (
    ALFA_USER,
    ALFA_USER2,
    BETA_USER,
    BETA_USER2,
    EXTERNAL_USER,
    FAST_TIMERS,
    SILENT_USER,
    Deployment,
    deploy,
)
from test_reference_flows import original

from conformance.checks.findings import ValidationContext
from conformance.pec.constants import Kind
from conformance.pec.parse import ParsedMessage, parse_message
from conformance.pec.samples import EICAR, ordinary_mail
from conformance.reference.faults import FaultSet, resign, unsign
from conformance.reference.provider import ReferenceProvider

UNKNOWN_BETA = "nessuno@pec.beta.test"
SIDES = {"access": "alfa", "tracking": "alfa", "incoming": "beta", "delivery": "beta", "index": "alfa"}


# ---------------------------------------------------------------------------------------------- snapshot


@dataclass
class Sent:
    """One message a provider's outbox delivered."""

    kind: str
    mail_from: str
    rcpts: list[str]
    data: bytes
    created: float
    sent_at: float

    @property
    def parsed(self) -> ParsedMessage:
        return parse_message(self.data)


@dataclass
class Run:
    name: str  # the flow
    alfa_faults: tuple[str, ...]
    beta_faults: tuple[str, ...]
    sent: dict[str, list[Sent]]  # provider -> its outbox, sent items in order
    boxes: dict[str, list[bytes]]  # mailbox address -> messages
    silent: list[tuple[str, list[str], bytes]]
    external: list[tuple[str, list[str], bytes]]
    replies: list[str]
    contexts: dict[str, ValidationContext]
    receipt_mailbox: dict[str, str]
    transactions: dict[str, float]  # alfa: identificativo -> dispatched_at
    tracking: list[dict]  # alfa's per-recipient timers
    events: dict[str, list[dict]]
    quarantined: dict[str, list[dict]]
    errors: dict[str, list[str]]
    extra: dict = field(default_factory=dict)

    def outbox(self, provider: str, kind: Kind | None = None) -> list[Sent]:
        return [s for s in self.sent[provider] if kind is None or s.kind == str(kind)]

    def box(self, address: str, kind: Kind | None = None) -> list[bytes]:
        return [m for m in self.boxes.get(address, []) if kind is None or parse_message(m).kind is kind]


def _outbox(provider: ReferenceProvider) -> list[Sent]:
    store = provider.store
    with store._lock:
        rows = store._db.execute("SELECT kind, mail_from, rcpts, data, created, sent_at FROM outbox "
                                 "WHERE state = 'sent' ORDER BY id").fetchall()
    return [Sent(r[0] or "", r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in rows]


def settled(d: Deployment, deadline: float = 30.0, confirmations: int = 3) -> bool:
    """Both outboxes empty on several consecutive polls: every message the flow caused has been handed
    on (a provider enqueues what a message causes before it answers 250, and marks an item sent only
    after the receiving side answered)."""
    end = time.monotonic() + deadline
    streak = 0
    while time.monotonic() < end:
        if d.alfa.store.pending_count() == 0 and d.beta.store.pending_count() == 0:
            streak += 1
            if streak >= confirmations:
                return True
        else:
            streak = 0
        time.sleep(0.05)
    return False


def pending(d: Deployment) -> list[str]:
    """What is still in the outboxes, for the message of a failed wait."""
    out = []
    for name, p in (("alfa", d.alfa), ("beta", d.beta)):
        with p.store._lock:
            rows = p.store._db.execute("SELECT kind, rcpts, attempts, last_error FROM outbox "
                                       "WHERE state = 'pending'").fetchall()
        out += [f"{name}: {r[0]} to {r[1]}, {r[2]} attempt(s), last error {r[3]!r}" for r in rows]
        out += [f"{name} error: {e}" for e in p.errors]
    return out


def snapshot(d: Deployment, name: str, alfa_faults, beta_faults, replies: list[str], **extra) -> Run:
    with d.alfa.store._lock:
        transactions = dict(d.alfa.store._db.execute(
            "SELECT identificativo, dispatched_at FROM transactions").fetchall())
    tracking = [vars(r) for r in d.alfa.store.tracking_rows()]
    boxes = {}
    for p in (d.alfa, d.beta):
        for user in p.config.users:
            boxes[user] = d.mailbox(p, user)
    return Run(
        name=name, alfa_faults=tuple(alfa_faults), beta_faults=tuple(beta_faults),
        sent={"alfa": _outbox(d.alfa), "beta": _outbox(d.beta)},
        boxes=boxes, silent=list(d.silent.messages), external=list(d.external.messages), replies=replies,
        contexts={"alfa": d.context(d.alfa), "beta": d.context(d.beta)},
        receipt_mailbox={"alfa": d.alfa.config.receipt_mailbox, "beta": d.beta.config.receipt_mailbox},
        transactions=transactions, tracking=tracking,
        events={"alfa": d.alfa.store.events(), "beta": d.beta.store.events()},
        quarantined={"alfa": d.alfa.store.quarantined(), "beta": d.beta.store.quarantined()},
        errors={"alfa": list(d.alfa.errors), "beta": list(d.beta.errors)},
        extra=extra,
    )


def switch_faults(provider: ReferenceProvider, names) -> None:
    """Switch a provider's faults at run time (the gestore's daticert hook follows provider.faults)."""
    provider.faults = FaultSet(list(names))


# ---------------------------------------------------------------------------------------------- flows
# Each flow: (directory, alfa_faults, beta_faults) -> Run


def _simple(name: str, submissions, *, timers=None, prepare=None):
    """A flow made of submissions through alfa's access point (raw, rcpts, submit keyword arguments)."""

    def flow(directory: Path, alfa_faults=(), beta_faults=()) -> Run:
        d = deploy(directory, alfa_faults=alfa_faults, beta_faults=beta_faults, timers=timers)
        try:
            if prepare is not None:
                prepare(d)
            replies, submitted = [], []
            for raw, rcpts, kw in submissions():
                submitted.append(raw)
                replies.append(d.submit(raw, rcpts, **kw))
            assert settled(d), f"the outboxes did not settle: {pending(d)}"
            return snapshot(d, name, alfa_faults, beta_faults, replies, submitted=submitted)
        finally:
            d.stop()

    flow.__name__ = name
    return flow


def with_from(raw: bytes, sender: str) -> bytes:
    """The same submission with another author in From."""
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"from:")]
    return b"\r\n".join([f"From: <{sender}>".encode(), *lines]) + b"\r\n\r\n" + body


# To a PEC user and an ordinary address, a second PEC user in Cc, complete receipts requested.
completa = _simple("completa", lambda: [(original(f"{BETA_USER}, {EXTERNAL_USER}", cc=BETA_USER2, tipo="completa"),
                                         [BETA_USER, EXTERNAL_USER, BETA_USER2], {})])
breve = _simple("breve", lambda: [(original(BETA_USER, tipo="breve", subject="Breve"), [BETA_USER], {})])
bcc = _simple("bcc", lambda: [(original(BETA_USER, extra=b"\r\nBcc: nascosto@pec.beta.test", subject="Bcc"),
                               [BETA_USER], {})])
hidden_recipient = _simple("hidden_recipient", lambda: [(original(BETA_USER, subject="Nascosto"),
                                                         [BETA_USER, BETA_USER2], {})])
sender_mismatch = _simple("sender_mismatch", lambda: [(with_from(original(BETA_USER, subject="Altro mittente"),
                                                                 ALFA_USER2), [BETA_USER],
                                                       {"mail_from": ALFA_USER2})])
virus_submission = _simple("virus_submission", lambda: [(original(BETA_USER, subject="Virus", attachment=EICAR),
                                                         [BETA_USER], {})])
unknown_mailbox = _simple("unknown_mailbox", lambda: [(original(UNKNOWN_BETA, subject="Sconosciuto"),
                                                       [UNKNOWN_BETA], {})])


def _sha1(d: Deployment) -> None:
    d.alfa.gestore.digest = "sha1"


# alfa signs its envelopes with SHA-1 (legacy, D16): a correct peer accepts them with a warning.
sha1_envelope = _simple("sha1_envelope", lambda: [(original(BETA_USER, subject="SHA-1"), [BETA_USER], {})],
                        prepare=_sha1)


def virus_envelope(directory: Path, alfa_faults=(), beta_faults=()) -> Run:
    """alfa's access point misses EICAR (acc-virus-not-detected is part of the set-up): beta must find it."""
    alfa_faults = tuple(dict.fromkeys(("acc-virus-not-detected", *alfa_faults)))
    return _simple("virus_envelope", lambda: [(original(BETA_USER, subject="Virus passato", attachment=EICAR),
                                               [BETA_USER], {})])(directory, alfa_faults, beta_faults)


def anomaly(directory: Path, alfa_faults=(), beta_faults=()) -> Run:
    """Ordinary Internet mail into beta's incoming point: an anomaly envelope for anna."""
    d = deploy(directory, alfa_faults=alfa_faults, beta_faults=beta_faults)
    try:
        reply = d.inject(d.beta, EXTERNAL_USER, [BETA_USER], ordinary_mail(), starttls=False)
        assert settled(d), pending(d)
        return snapshot(d, "anomaly", alfa_faults, beta_faults, [reply])
    finally:
        d.stop()


def _inject_altered(name: str, alter):
    """A normal transaction to anna first (fault-free), then beta's faults are switched on and an altered
    copy of alfa's envelope is handed to beta's incoming point as alfa would."""

    def flow(directory: Path, alfa_faults=(), beta_faults=()) -> Run:
        d = deploy(directory, alfa_faults=alfa_faults)
        try:
            replies = [d.submit(original(BETA_USER, subject="Prima"), [BETA_USER])]
            assert settled(d), pending(d)
            envelopes = [s.data for s in _outbox(d.alfa) if s.kind == str(Kind.BUSTA_TRASPORTO)]
            before = snapshot(d, name, alfa_faults, beta_faults, replies)
            switch_faults(d.beta, beta_faults)
            altered = alter(d, envelopes[0])
            replies.append(d.inject(d.beta, ALFA_USER, [BETA_USER], altered))
            assert settled(d), pending(d)
            return snapshot(d, name, alfa_faults, beta_faults, replies, envelope=envelopes[0], injected=altered,
                            before=before)
        finally:
            d.stop()

    flow.__name__ = name
    return flow


def _drop_original(d: Deployment, envelope: bytes) -> bytes:
    """alfa's envelope without its postacert.eml, signed again with alfa's own key: a correctly signed
    message from a PEC provider that is not a correct envelope (RIC-08, ANO-14). Its daticert is kept, so
    the transaction it belongs to is known."""
    from conformance.reference.faults import _drop_mime_part

    g = d.alfa.gestore
    return resign(envelope, lambda inner: _drop_mime_part(inner, lambda p: b"postacert.eml" in p[:600]),
                  g.key, g.certificate, g.digest)


def _forge(d: Deployment, envelope: bytes) -> bytes:
    """alfa's envelope with one word of the carried original changed after signing: still signed by a
    certificate of the index, but the signature no longer verifies (RIC-06)."""
    forged = envelope.replace(b"in allegato la fattura", b"in allegato la FATTURA", 1)
    assert forged != envelope
    return forged


unsigned_copy = _inject_altered("unsigned_copy", lambda d, env: unsign(env))
forged_copy = _inject_altered("forged_copy", _forge)
malformed_signed = _inject_altered("malformed_signed", _drop_original)


# ---------------------------------------------------------------------------------------------- timers
# FAST_TIMERS: preavviso at 2 s, the 24 h notice in the middle of [3 s, 4 s], counted from acceptance.
# The flow is split in two halves so that several deployments can wait for their timers side by side.


def timers_start(directory: Path, alfa_faults=(), beta_faults=()):
    """To the silent PEC provider (never answers) and, separately, to anna (consegna in well under 2 s)."""
    d = deploy(directory, alfa_faults=alfa_faults, beta_faults=beta_faults, timers=FAST_TIMERS)
    try:
        replies = [d.submit(original(SILENT_USER, subject="Silenzio"), [SILENT_USER]),
                   d.submit(original(BETA_USER, subject="Pronta consegna"), [BETA_USER])]
    except BaseException:
        d.stop()
        raise
    return d, replies, time.time()


def timers_finish(started, alfa_faults=(), beta_faults=(), wait_until: float | None = None) -> Run:
    d, replies, t0 = started
    try:
        t = FAST_TIMERS
        # past the end of the 24 h window for both submissions, then settle
        end = wait_until or (t0 + t["timeout"] + 1.0)
        while time.time() < end:
            time.sleep(0.05)
        assert settled(d), pending(d)
        return snapshot(d, "timers", alfa_faults, beta_faults, replies, timers=dict(t))
    finally:
        d.stop()


def timers(directory: Path, alfa_faults=(), beta_faults=()) -> Run:
    return timers_finish(timers_start(directory, alfa_faults, beta_faults), alfa_faults, beta_faults)


def published_index(tmp_path: Path, alfa_faults: tuple[str, ...] = (), beta_faults: tuple[str, ...] = ()) -> Run:
    """Alfa's published index (the signed LDIF it serves for the directory), written with its index faults on."""
    from conformance.pec.pki import ProviderSpec, write_pki_directory
    from conformance.reference.deploy import publish_index

    name = "Gestore Alfa S.p.A."
    write_pki_directory(tmp_path / "pki", [ProviderSpec(name, ("pec.alfa.test",))])
    path = publish_index(tmp_path / "pki", name, alfa_faults)
    return Run("published_index", tuple(alfa_faults), tuple(beta_faults), sent={}, boxes={}, silent=[], external=[],
               replies=[], contexts={}, receipt_mailbox={}, transactions={}, tracking=[], events={}, quarantined={},
               errors={}, extra={"published": path.read_bytes(), "pki": tmp_path / "pki", "provider": name})

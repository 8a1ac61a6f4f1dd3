"""Watching where a load's messages arrive: the senders' mailboxes (acceptance and delivery receipts,
notices) polled by one thread, and the counterpart's logs (the target's envelopes). Every arrival is
timed when it is first seen and tied to its message by daticert's msgid (the client's Message-ID).

A sample of the receipts the target itself made (every `sample_every`-th) is saved as evidence and
judged by the validator after the run, so that validating never slows the run it measures.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.evidence import EvidenceStore
from ..net.mailbox import MailboxError, MaildirReader, open_mailbox
from ..pec.constants import Kind
from ..pec.parse import parse_message

CONSEGNE = {str(Kind.CONSEGNA_COMPLETA), str(Kind.CONSEGNA_BREVE), str(Kind.CONSEGNA_SINTETICA)}
# What ends a recipient's wait without a delivery receipt: the message is then lost for that recipient.
NON_DELIVERY = {str(Kind.MANCATA_CONSEGNA), str(Kind.MANCATA_CONSEGNA_24H), str(Kind.MANCATA_CONSEGNA_VIRUS)}


@dataclass
class Arrival:
    at: float
    mailbox: str
    kind: str
    msgid: str | None
    recipient: str | None
    evidence: str | None = None


@dataclass
class Box:
    address: str
    url: str
    password: str | None = None
    seen: set[str] = field(default_factory=set)


class MailboxWatch:
    """Polls mailboxes until stopped; `arrivals` grows as messages come."""

    def __init__(self, boxes: list[Box], *, evidence: EvidenceStore, target_domains: list[str],
                 sample_every: int, client_tls: ssl.SSLContext | None = None, poll: float = 0.1):
        self.boxes = boxes
        self.evidence = evidence
        self.target_domains = {d.lower() for d in target_domains}
        self.sample_every = max(sample_every, 1)
        self.client_tls = client_tls
        self.poll = poll
        self.arrivals: list[Arrival] = []
        self.samples: list[tuple[str, str]] = []  # (evidence path, kind) of target-made receipts
        self.errors: list[str] = []
        self._made = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailbox-watch", daemon=True)

    def start(self) -> MailboxWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.sweep()  # one last look, so nothing that arrived before the stop is missed

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.sweep()

    def sweep(self) -> None:
        for box in self.boxes:
            try:
                for raw in self._new_messages(box):
                    self._record(box, raw, time.time())
            except MailboxError as exc:
                self.errors.append(f"{box.address}: {exc}")

    def _new_messages(self, box: Box):
        if box.url.startswith("maildir://"):
            reader = MaildirReader(Path(box.url.removeprefix("maildir://")), box.address)
            for uid, path in reader._scan().items():  # one directory listing per poll, new keys only
                if uid not in box.seen:
                    raw = reader._read(uid, path)
                    if raw is not None:
                        box.seen.add(uid)
                        yield raw
            return
        reader = open_mailbox(box.url, box.password, ssl_context=self.client_tls, timeout=15)
        try:
            for uid in reader.list_uids():
                if uid not in box.seen:
                    box.seen.add(uid)
                    yield reader.fetch(uid).raw
        finally:
            reader.close()

    def _record(self, box: Box, raw: bytes, at: float) -> None:
        msg = parse_message(raw)
        d = msg.daticert
        kind = str(msg.kind)
        recipient = (d.consegna or None) if d else None
        arrival = Arrival(at, box.address, kind, d.msgid if d else None, recipient)
        if self._target_made(kind, recipient):
            self._made += 1
            if self._made % self.sample_every == 1 or self.sample_every == 1:
                arrival.evidence = self.evidence.write("load", "in", kind, raw)
                self.samples.append((arrival.evidence, kind))
        with self._lock:
            self.arrivals.append(arrival)

    def _target_made(self, kind: str, recipient: str | None) -> bool:
        """Receipts the target issued itself (a counterpart's receipt is never judged as the target's)."""
        if kind in CONSEGNE or kind == str(Kind.MANCATA_CONSEGNA):
            return bool(recipient) and recipient.rpartition("@")[2].lower() in self.target_domains
        return kind in (str(Kind.ACCETTAZIONE), str(Kind.NON_ACCETTAZIONE), str(Kind.PREAVVISO_12H),
                        str(Kind.MANCATA_CONSEGNA_24H), str(Kind.MANCATA_CONSEGNA_VIRUS))


def read_counterpart_logs(paths: list[Path]) -> tuple[list[dict], list[dict], list[str]]:
    """Envelopes received, answers sent and errors, from the counterpart processes' JSON lines."""
    received, answers, errors = [], [], []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a killed process
            if entry.get("ev") == "in":
                received.append(entry)
            elif entry.get("ev") == "out":
                answers.append(entry)
            elif entry.get("ev") == "errors":
                errors += entry.get("errors") or []
    return received, answers, errors

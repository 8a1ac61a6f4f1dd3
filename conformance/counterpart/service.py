"""The counterpart and the ordinary domain as a long-lived service with their state on disk
(`pec-conformance counterpart serve`), for deployments whose 12 h and 24 h timers are real.

State folder layout:

- `messages/NNNNNN-<party>-<in|out>.eml`: every message received or sent, written before the `250`
  (received) or before the SMTP transaction (sent);
- `journal.jsonl`: one line per message: file, party, direction, envelope, TLS, time (wall clock);
- `behaviours.json`: how the counterpart answers each recipient, written by `run --long-timers` and
  read on every envelope, so a restarted service answers as the run asked.

The run and the service share nothing but this folder: `RemoteCounterpart` and `RemoteOrdinary` give a
scenario the same view (`received`, `set_behaviour`, `sent_matching`) as the in-process parties.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..pec.parse import ParsedMessage, parse_message
from .peer import BEHAVIOURS, Behaviour, Counterpart

JOURNAL = "journal.jsonl"
BEHAVIOURS_FILE = "behaviours.json"


class StateError(ValueError):
    """The state folder is missing or unreadable."""


class StateStore:
    """One service's state folder; safe for the service's threads, read by other processes."""

    def __init__(self, directory: Path, *, create: bool = False):
        self.directory = Path(directory)
        if create:
            (self.directory / "messages").mkdir(parents=True, exist_ok=True)
        elif not (self.directory / "messages").is_dir():
            raise StateError(f"{self.directory}: not a counterpart state folder (run `counterpart serve` first)")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ written by the service
    def hook(self, party: str):
        """An evidence hook for a Recorder: the message and its journal line on disk (fsynced) first."""
        def write(direction: str, raw: bytes, meta: dict) -> None:
            with self._lock:
                n = sum(1 for _ in (self.directory / "messages").iterdir()) + 1
                name = f"{n:06d}-{party}-{direction}.eml"
                path = self.directory / "messages" / name
                with open(path, "wb") as fh:
                    fh.write(raw)
                    fh.flush()
                    os.fsync(fh.fileno())
                line = {"file": name, "party": party, "direction": direction,
                        **{k: meta.get(k) for k in ("mail_from", "rcpts", "tls", "peer", "kind", "related", "at")}}
                with open(self.directory / JOURNAL, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        return write

    # ------------------------------------------------------------------ behaviours (either side)
    def behaviours(self) -> dict[str, dict]:
        try:
            return json.loads((self.directory / BEHAVIOURS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.directory / BEHAVIOURS_FILE}: {exc}") from None

    def set_behaviour(self, name: str, recipients: list[str], delay: float = 0.0) -> None:
        if name not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {name!r}")
        with self._lock:
            current = self.behaviours()
            current.update({r.lower(): {"name": name, "delay": float(delay)} for r in recipients})
            tmp = self.directory / f".{BEHAVIOURS_FILE}.new"
            tmp.write_text(json.dumps(current, indent=1), encoding="utf-8")
            tmp.replace(self.directory / BEHAVIOURS_FILE)  # atomic: the service never reads half a file

    # ------------------------------------------------------------------ read by the run
    def entries(self, party: str | None = None, direction: str | None = None) -> list[dict]:
        try:
            lines = (self.directory / JOURNAL).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write: its message is re-sent by the peer
            if (party is None or item["party"] == party) and (direction is None or item["direction"] == direction):
                out.append(item)
        return out

    def raw(self, entry: dict) -> bytes:
        return (self.directory / "messages" / entry["file"]).read_bytes()


class PersistentCounterpart(Counterpart):
    """A counterpart whose answers follow the state folder's behaviours (so a restart keeps them)."""

    def __init__(self, *args, store: StateStore, **kwargs):
        super().__init__(*args, **kwargs)
        self.store = store

    def behaviour_for(self, recipient: str) -> Behaviour:
        chosen = self.store.behaviours().get(recipient.lower())
        if chosen is None:
            return super().behaviour_for(recipient)
        return Behaviour(chosen["name"], float(chosen.get("delay", 0.0)))


@dataclass
class StoredReceived:
    """A message the service received, as a scenario reads it (the shape of `smtp.Received`)."""

    at: float
    mail_from: str
    rcpts: list[str]
    raw: bytes
    tls: bool
    peer: str
    file: str
    origin: object | None = None
    behaviour: str | None = None
    _message: ParsedMessage | None = None

    @property
    def message(self) -> ParsedMessage:
        if self._message is None:
            self._message = parse_message(self.raw)
        return self._message


@dataclass
class StoredSent:
    at: float
    kind: str
    mail_from: str
    rcpts: list[str]
    raw: bytes
    related: str | None


class _Remote:
    party = ""

    def __init__(self, store: StateStore):
        self.store = store
        self._cache: dict[str, StoredReceived] = {}

    @property
    def received(self) -> list[StoredReceived]:
        out = []
        for e in self.store.entries(self.party, "in"):
            item = self._cache.get(e["file"])
            if item is None:
                item = StoredReceived(float(e.get("at") or 0.0), e.get("mail_from") or "", list(e.get("rcpts") or []),
                                      self.store.raw(e), bool(e.get("tls")), e.get("peer") or "", e["file"])
                self._cache[e["file"]] = item
            out.append(item)
        return out

    def send(self, *args, **kwargs):
        raise RuntimeError("the service's party sends only its own answers; inject through an in-process party")


class RemoteCounterpart(_Remote):
    """The running service's counterpart, seen from a run: what it received and sent, its behaviours."""

    party = "counterpart"

    def __init__(self, store: StateStore, credentials, index=None):
        super().__init__(store)
        self.credentials = credentials
        self.index = index

    @property
    def receipt_mailbox(self) -> str:
        return self.credentials.receipt_mailbox

    @property
    def service_address(self) -> str:
        return self.credentials.service_address

    def set_behaviour(self, name: str, *, delay: float = 0.0, recipients: list[str] | None = None, **_ignored) -> None:
        if recipients is None:
            raise ValueError("a long-lived service takes behaviours per recipient only")
        self.store.set_behaviour(name, recipients, delay)

    @property
    def sent(self) -> list[StoredSent]:
        return self.sent_matching(lambda s: True)

    def sent_matching(self, predicate) -> list[StoredSent]:
        items = [StoredSent(float(e.get("at") or 0.0), e.get("kind") or "", e.get("mail_from") or "",
                            list(e.get("rcpts") or []), self.store.raw(e), e.get("related"))
                 for e in self.store.entries(self.party, "out")]
        return [s for s in items if predicate(s)]


class RemoteOrdinary(_Remote):
    party = "ordinary"

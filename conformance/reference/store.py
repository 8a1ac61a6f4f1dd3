"""Durable state of the reference provider, in one SQLite file.

- `events`: the message log of LOG-01 (every message accepted, sent or received), kept for the
  configured retention (30 months by default, LOG-03).
- `outbox`: every message to send, stored (with its bytes) before anything is acknowledged;
  a worker sends it and marks it sent. A crash between the two re-sends the same bytes, same
  Message-ID, never a different message.
- `transactions` and `tracking`: the sender side's per-recipient timers (decision D26). A due
  notice is written to the outbox and its timer closed in one transaction (intent first).
- `quarantine`: infected messages kept as they arrived (VIR-04, VIR-12, LOG-04).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, event TEXT NOT NULL, direction TEXT NOT NULL,
    kind TEXT, message_id TEXT, pec_msgid TEXT, client_msgid TEXT, sender TEXT, recipients TEXT,
    subject TEXT, peer TEXT, related TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE INDEX IF NOT EXISTS events_pec ON events(pec_msgid);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, message_id TEXT, kind TEXT, mail_from TEXT NOT NULL,
    rcpts TEXT NOT NULL, data BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT, sent_at REAL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt);
CREATE TABLE IF NOT EXISTS transactions (
    identificativo TEXT PRIMARY KEY, dispatched_at REAL NOT NULL, sender TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracking (
    identificativo TEXT NOT NULL, recipient TEXT NOT NULL, presa_at REAL, consegna_at REAL,
    preavviso TEXT NOT NULL DEFAULT 'pending', timeout TEXT NOT NULL DEFAULT 'pending',
    PRIMARY KEY (identificativo, recipient));
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, reason TEXT NOT NULL, sender TEXT, recipients TEXT, data BLOB NOT NULL);
"""


@dataclass
class OutboxItem:
    id: int
    message_id: str | None
    kind: str | None
    mail_from: str
    rcpts: list[str]
    data: bytes
    attempts: int
    created: float


@dataclass
class TrackingRow:
    identificativo: str
    recipient: str
    dispatched_at: float
    presa_at: float | None
    consegna_at: float | None
    preavviso: str
    timeout: str
    transaction: dict


class Store:
    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL: a commit is in the file (the OS has it) before anything is acknowledged, so a killed
        # process loses nothing; FULL also survives a power cut, at the cost of an fsync per commit.
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        # A worker killed while sending leaves its claim behind: send it again (same bytes, same Message-ID).
        self._db.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ events (LOG-01)
    def log(self, event: str, direction: str, *, kind: str | None = None, message_id: str | None = None,
            pec_msgid: str | None = None, client_msgid: str | None = None, sender: str | None = None,
            recipients: list[str] | None = None, subject: str | None = None, peer: str | None = None,
            related: str | None = None, detail: str | None = None, db: sqlite3.Connection | None = None) -> None:
        sql = ("INSERT INTO events (at, event, direction, kind, message_id, pec_msgid, client_msgid, sender, "
               "recipients, subject, peer, related, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        args = (time.time(), event, direction, kind, message_id, pec_msgid, client_msgid, sender,
                json.dumps(recipients or []), subject, peer, related, detail)
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    def events(self, **where) -> list[dict]:
        clause = " AND ".join(f"{k} = ?" for k in where) or "1=1"
        with self._lock:
            cur = self._db.execute(f"SELECT * FROM events WHERE {clause} ORDER BY id", tuple(where.values()))
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def purge(self, retention_months: int, now: float | None = None) -> int:
        """Drop log entries older than the retention period (LOG-03: 30 months by default)."""
        cutoff = (now or time.time()) - retention_months * 30.44 * 86400
        with self.transaction() as tx:
            return tx.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount

    # ------------------------------------------------------------------ outbox
    def enqueue(self, db: sqlite3.Connection, *, mail_from: str, rcpts: list[str], data: bytes,
                message_id: str | None, kind: str | None, at: float | None = None) -> int:
        now = time.time()
        cur = db.execute(
            "INSERT INTO outbox (created, message_id, kind, mail_from, rcpts, data, next_attempt) "
            "VALUES (?,?,?,?,?,?,?)",
            (now, message_id, kind, mail_from, json.dumps(rcpts), data, at or now))
        return int(cur.lastrowid)

    def due(self, now: float, limit: int = 20) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, message_id, kind, mail_from, rcpts, data, attempts, created FROM outbox "
                "WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?", (now, limit)).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7]) for r in rows]

    def claim(self, now: float) -> OutboxItem | None:
        """Take the oldest due item for one worker (several workers send in parallel)."""
        with self.transaction() as tx:
            row = tx.execute(
                "SELECT id, message_id, kind, mail_from, rcpts, data, attempts, created FROM outbox "
                "WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            tx.execute("UPDATE outbox SET state = 'sending' WHERE id = ?", (row[0],))
        return OutboxItem(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7])

    def mark_sent(self, item_id: int, log: dict | None = None) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE outbox SET state = 'sent', sent_at = ? WHERE id = ?", (time.time(), item_id))
            if log is not None:
                self.log(db=tx, **log)

    def mark_retry(self, item_id: int, error: str, next_attempt: float, give_up: bool) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?, "
                       "state = ? WHERE id = ?", (error[:500], next_attempt, "failed" if give_up else "pending",
                                                  item_id))

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')").fetchone()[0]

    def sent_messages(self, kind: str | None = None) -> list[tuple[str, bytes]]:
        with self._lock:
            sql = "SELECT message_id, data FROM outbox WHERE state = 'sent'"
            args: tuple = ()
            if kind:
                sql += " AND kind = ?"
                args = (kind,)
            return [(r[0], r[1]) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    # ------------------------------------------------------------------ sender-side tracking
    def open_transaction(self, db: sqlite3.Connection, identificativo: str, sender: str, data: dict,
                         pec_recipients: list[str], at: float) -> None:
        db.execute("INSERT OR IGNORE INTO transactions (identificativo, dispatched_at, sender, data) "
                   "VALUES (?,?,?,?)", (identificativo, at, sender, json.dumps(data)))
        for rcpt in pec_recipients:
            db.execute("INSERT OR IGNORE INTO tracking (identificativo, recipient) VALUES (?,?)",
                       (identificativo, rcpt.lower()))

    def record_receipt(self, identificativo: str, recipients: list[str], field: str, at: float,
                       db: sqlite3.Connection | None = None) -> int:
        """A presa in carico or consegna for recipients (or `closed`: a known negative outcome, D25)."""
        if db is None:
            with self.transaction() as tx:
                return self.record_receipt(identificativo, recipients, field, at, tx)
        n = 0
        for r in recipients:
            if field == "closed":
                for column in ("preavviso", "timeout"):
                    n += db.execute(f"UPDATE tracking SET {column} = 'closed' WHERE identificativo = ? AND "
                                    f"recipient = ? AND {column} = 'pending'", (identificativo, r.lower())).rowcount
            elif field in ("presa_at", "consegna_at"):
                n += db.execute(f"UPDATE tracking SET {field} = COALESCE({field}, ?) "
                                "WHERE identificativo = ? AND recipient = ?", (at, identificativo, r.lower())).rowcount
            else:
                raise ValueError(field)
        return n

    def tracking_rows(self, where: str = "1=1", args: tuple = ()) -> list[TrackingRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t.identificativo, t.recipient, x.dispatched_at, t.presa_at, t.consegna_at, t.preavviso, "
                f"t.timeout, x.data FROM tracking t JOIN transactions x USING (identificativo) WHERE {where}",
                args).fetchall()
        return [TrackingRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def transaction_data(self, identificativo: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM transactions WHERE identificativo = ?",
                                   (identificativo,)).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, reason: str, sender: str | None, recipients: list[str], data: bytes,
                   db: sqlite3.Connection | None = None) -> None:
        args = (time.time(), reason, sender, json.dumps(recipients), data)
        sql = "INSERT INTO quarantine (at, reason, sender, recipients, data) VALUES (?,?,?,?,?)"
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    def quarantined(self) -> list[dict]:
        with self._lock:
            cur = self._db.execute("SELECT id, at, reason, sender, recipients FROM quarantine ORDER BY id")
            return [dict(zip(("id", "at", "reason", "sender", "recipients"), r, strict=True)) for r in cur]

"""Sender-side tracking: per-recipient timers and the virus non-delivery notice.

TMO-02..09 with decisions D25-D27: the 12 h notice for recipient R unless a presa in carico listing R
or a consegna for R arrived within 12 h; the 24 h notice (fired inside the 22-24 h window) unless a
consegna for R arrived first. A due notice is written to the outbox and its timer closed in one
SQLite transaction, with a Message-ID derived from the timer: a crash can at worst repeat the same
message, never lose it. VIR-10: a rilevazione virus becomes an avviso di mancata consegna per virus.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from ..pec import build as b
from ..pec.constants import CODE_TIMEOUT_12H, CODE_TIMEOUT_24H, CODE_VIRUS, Kind
from ..pec.daticert import Recipient
from ..pec.parse import ParsedMessage


def transaction_to_dict(t: b.Transaction) -> dict:
    return {"mittente": t.mittente, "destinatari": [[r.address, r.tipo] for r in t.destinatari],
            "risposte": t.risposte, "oggetto": t.oggetto, "identificativo": t.identificativo, "msgid": t.msgid,
            "ricevuta": t.ricevuta}


def transaction_from_dict(d: dict) -> b.Transaction:
    return b.Transaction(mittente=d["mittente"], destinatari=[Recipient(a, t) for a, t in d["destinatari"]],
                         risposte=d["risposte"], oggetto=d["oggetto"], identificativo=d["identificativo"],
                         msgid=d["msgid"], ricevuta=d["ricevuta"])


class Tracker:
    def __init__(self, provider):
        self.p = provider

    def fire_times(self) -> tuple[float, float]:
        """Seconds after dispatch at which the 12 h and the 24 h notices go out."""
        timers = self.p.config.timers
        start, end = timers.window_start, timers.timeout
        fire24 = start + (end - start) / 2  # the middle of the [22 h, 24 h] window (TMO-03)
        if self.p.faults.on("trk-24h-early"):
            fire24 = start * 0.6  # clearly inside the 12-22 h span, whatever the clock granularity
        return timers.preavviso, fire24

    def _notice_id(self, tag: str, identificativo: str, recipient: str) -> str:
        key = hashlib.sha1(f"{tag}|{identificativo}|{recipient}".encode()).hexdigest()[:20]
        return f"<{tag}.{key}@{self.p.config.domains[0]}>"

    def tick(self, now: float | None = None) -> int:
        """Emit every notice that is due; returns how many were written to the outbox."""
        p = self.p
        now = now or time.time()
        fire12, fire24 = self.fire_times()
        emitted = 0
        for row in p.store.tracking_rows("t.preavviso = 'pending' OR t.timeout = 'pending'"):
            due12 = row.dispatched_at + fire12
            due24 = row.dispatched_at + fire24
            presa_at, consegna_at = row.presa_at, row.consegna_at
            if p.faults.on("trk-timers-per-transaction"):  # the deviation: any recipient's receipt counts
                others = p.store.tracking_rows("t.identificativo = ?", (row.identificativo,))
                presa_at = min((r.presa_at for r in others if r.presa_at is not None), default=None)
                consegna_at = min((r.consegna_at for r in others if r.consegna_at is not None), default=None)
            if row.preavviso == "pending" and now >= due12:
                cleared = [x for x in (presa_at, consegna_at) if x is not None and x <= due12]
                if p.faults.on("trk-preavviso-despite-consegna"):
                    cleared = []
                if p.faults.on("trk-presa-ignored"):
                    cleared = [x for x in (consegna_at,) if x is not None and x <= due12]
                state = "suppressed" if cleared or p.faults.on("trk-no-preavviso") else "sent"
                emitted += self._emit(row, Kind.PREAVVISO_12H, "preavviso", state, CODE_TIMEOUT_12H, due12)
            if row.timeout == "pending" and now >= due24:
                cleared = consegna_at is not None and consegna_at <= due24
                if p.faults.on("trk-presa-stops-24h"):  # the deviation: a presa in carico taken as the delivery
                    cleared = cleared or (presa_at is not None and presa_at <= due24)
                if p.faults.on("trk-late-consegna-ignored"):  # only a consegna within 12 h counts
                    cleared = consegna_at is not None and consegna_at <= due12
                state = "suppressed" if cleared or p.faults.on("trk-no-24h") else "sent"
                emitted += self._emit(row, Kind.MANCATA_CONSEGNA_24H, "timeout", state, CODE_TIMEOUT_24H, due24)
        return emitted

    def _emit(self, row, kind: Kind, column: str, state: str, code: str, due: float) -> int:
        p = self.p
        with p.store.transaction() as tx:
            current = tx.execute(f"SELECT {column} FROM tracking WHERE identificativo = ? AND recipient = ?",
                                 (row.identificativo, row.recipient)).fetchone()
            if current is None or current[0] != "pending":
                return 0
            tx.execute(f"UPDATE tracking SET {column} = ? WHERE identificativo = ? AND recipient = ?",
                       (state, row.identificativo, row.recipient))
            if state != "sent":
                return 0
            t = transaction_from_dict(row.transaction)
            instant = datetime.now(UTC).replace(microsecond=0)
            copies = 2 if kind is Kind.MANCATA_CONSEGNA_24H and p.faults.on("trk-24h-twice") else 1
            for copy in range(copies):
                tag = ("tmo12" if kind is Kind.PREAVVISO_12H else "tmo24") + (f"x{copy}" if copy else "")
                message_id = self._notice_id(tag, row.identificativo, row.recipient)
                notice = b.build_notice(
                    kind, p.gestore, t, instant, to=t.mittente, message_id=message_id,
                    details=b.NoticeDetails(consegna=row.recipient, errore="altro", errore_esteso=b.error_string(
                        code, p.gestore, "il messaggio non è stato consegnato nelle "
                        + ("dodici" if kind is Kind.PREAVVISO_12H else "ventiquattro") + " ore successive al suo invio")))
                notice = p.finish(kind, notice)
                to = row.recipient if p.faults.on("trk-timeout-to-recipient") else t.mittente
                if to != t.mittente:
                    from .faults import set_header
                    notice = set_header(notice, "To", to)
                p.store.enqueue(tx, mail_from=p.config.service_address, rcpts=[to], data=notice,
                                message_id=message_id, kind=str(kind))
                p.store.log("notice-emitted", "out", kind=str(kind), message_id=message_id,
                            pec_msgid=row.identificativo, client_msgid=t.msgid, sender=t.mittente,
                            recipients=[row.recipient], subject=t.oggetto, db=tx)
        p.transport.wake()
        return copies

    def virus_notice(self, msg: ParsedMessage) -> tuple[list[str], bytes] | None:
        """The avviso di mancata consegna per virus for our user, from a rilevazione virus (VIR-10)."""
        p = self.p
        if p.faults.on("trk-no-virus-notice") or msg.daticert is None:
            return None
        d = msg.daticert
        t = b.Transaction.from_daticert(d)
        instant = datetime.now(UTC).replace(microsecond=0)
        virus = (d.errore_esteso or "virus").removeprefix("virus rilevato: ")
        notice = b.build_mancata_consegna_virus(p.gestore, t, instant, recipient=d.consegna or "", virus=virus,
                                                code=CODE_VIRUS)
        return [t.mittente], p.finish(Kind.MANCATA_CONSEGNA_VIRUS, notice)

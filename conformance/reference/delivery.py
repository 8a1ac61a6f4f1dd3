"""Delivery point (punto di consegna): Maildir per mailbox, receipts per recipient.

CON-02 (a receipt only after the envelope is in the mailbox), CON-04 (delivered unchanged),
CON-06 (one receipt per recipient), CON-08..17 (completa / breve / sintetica, Cc always
sintetica, decision D5), CON-18..20 and decision D18 (non-delivery with 5.1.1 / 5.2.2).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

from ..pec import build as b
from ..pec.constants import (
    CODE_MAILBOX_FULL,
    CODE_UNKNOWN_MAILBOX,
    ERRORE_NO_DEST,
    TIPO_BREVE,
    TIPO_COMPLETA,
    TIPO_SINTETICA,
    Kind,
)
from ..pec.parse import ParsedMessage

_counter = 0


class MailboxFull(Exception):
    pass


class Maildirs:
    """One Maildir per mailbox under a root: <root>/<address>/{tmp,new,cur}."""

    def __init__(self, root: Path, quotas: dict[str, int] | None = None, *, fsync: bool = False):
        self.root = Path(root)
        self.quotas = quotas or {}
        self.fsync = fsync

    def path(self, address: str) -> Path:
        return self.root / address.lower()

    def ensure(self, address: str) -> Path:
        base = self.path(address)
        for sub in ("tmp", "new", "cur"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        return base

    def used(self, address: str) -> int:
        base = self.path(address)
        total = 0
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                total += sum(e.stat().st_size for e in os.scandir(d) if e.is_file())
        return total

    def deliver(self, address: str, data: bytes) -> Path:
        """Write the message to tmp/, rename into new/ (the Maildir protocol; fsync first when the provider
        is configured for power-cut durability); raise MailboxFull."""
        global _counter
        quota = self.quotas.get(address.lower(), 0)
        if quota and self.used(address) + len(data) > quota:
            raise MailboxFull(address)
        base = self.ensure(address)
        _counter += 1
        name = f"{time.time():.6f}.P{os.getpid()}Q{_counter}.{socket.gethostname()},S={len(data)}"
        tmp = base / "tmp" / name
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        final = base / "new" / name
        os.rename(tmp, final)
        if self.fsync:
            dirfd = os.open(base / "new", os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        return final

    def messages(self, address: str) -> list[bytes]:
        base = self.path(address)
        out = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                out += [p.read_bytes() for p in sorted(d.iterdir(), key=lambda p: p.name)]
        return out


@dataclass
class DeliveryOutcome:
    recipient: str
    delivered: bool
    notice: bytes | None
    kind: Kind | None


requested_variant = b.requested_variant
variant_for = b.variant_for


class DeliveryPoint:
    def __init__(self, provider):
        self.p = provider

    def deliver_envelope(self, msg: ParsedMessage, recipient: str, instant) -> DeliveryOutcome:
        """Put a correct transport envelope in the mailbox, then build the receipt for this recipient."""
        p = self.p
        t = b.Transaction.from_daticert(msg.daticert)
        recipient = recipient.lower()
        user = p.config.users.get(recipient)
        if user is None:
            if p.faults.on("dlv-no-mancata-consegna"):
                return DeliveryOutcome(recipient, False, None, None)
            return self._non_delivery(t, recipient, instant, CODE_UNKNOWN_MAILBOX, "indirizzo non valido")
        try:
            if not p.faults.on("dlv-consegna-not-stored"):
                p.maildirs.deliver(recipient, _stamped(p, msg.raw))
        except MailboxFull:
            return self._non_delivery(t, recipient, instant, CODE_MAILBOX_FULL, "casella piena", errore="altro")
        if p.faults.on("dlv-no-consegna") or p.faults.one_in("dlv-lose-one-in-ten", 10):
            return DeliveryOutcome(recipient, True, None, None)
        variant = variant_for(msg, recipient)
        if variant == TIPO_SINTETICA and p.faults.on("dlv-cc-gets-completa") and requested_variant(msg) != variant:
            variant = TIPO_COMPLETA
        if variant == TIPO_SINTETICA and p.faults.on("dlv-cc-gets-breve") and requested_variant(msg) == TIPO_BREVE:
            variant = TIPO_BREVE
        if requested_variant(msg) == TIPO_SINTETICA and p.faults.on("dlv-sintetica-ignored"):
            variant = TIPO_COMPLETA
        if p.faults.on("dlv-cc-wins") and recipient in {a.lower() for _, a in getaddresses(msg.header_all("cc"))}:
            variant = TIPO_SINTETICA  # the deviation: Cc looked at first, a recipient in To and Cc is a copy
        kind = {"completa": Kind.CONSEGNA_COMPLETA, "breve": Kind.CONSEGNA_BREVE,
                "sintetica": Kind.CONSEGNA_SINTETICA}[variant]
        brief = _BRIEF_FAULTS.get(next((f.name for f in p.faults.active if f.name in _BRIEF_FAULTS), ""))
        if variant == TIPO_BREVE and brief is not None and msg.postacert is not None:
            d = b.NoticeDetails(consegna=recipient, ricevuta=variant)
            notice = b.build_notice(kind, p.gestore, t, instant, to=t.mittente, details=d,
                                    original=b.brief_original(msg.postacert, deviation=brief))
        else:
            notice = b.build_avvenuta_consegna(p.gestore, t, instant, recipient=recipient, variant=variant,
                                               carried_original=msg.postacert)
        return DeliveryOutcome(recipient, True, p.finish(kind, notice), kind)

    def _non_delivery(self, t: b.Transaction, recipient: str, instant, code: str, description: str,
                      errore: str = ERRORE_NO_DEST) -> DeliveryOutcome:
        p = self.p
        notice = b.build_mancata_consegna(p.gestore, t, instant, recipient=recipient, errore=errore,
                                          errore_esteso=b.error_string(code, p.gestore, description))
        return DeliveryOutcome(recipient, False, p.finish(Kind.MANCATA_CONSEGNA, notice), Kind.MANCATA_CONSEGNA)

    def deliver_unchanged(self, recipient: str, raw: bytes) -> bool:
        """Notices, anomaly envelopes: into the mailbox as they are, no receipt (CON-03, CON-04)."""
        try:
            self.p.maildirs.deliver(recipient, _stamped(self.p, raw))
            return True
        except MailboxFull:
            return False


def _stamped(p, raw: bytes) -> bytes:
    """For dlv-stamps-header: the stored message with a header field of the delivery point's own (CON-04)."""
    if p.faults.on("dlv-stamps-header"):
        return b"X-Verificato-Da: punto-di-consegna\r\n" + raw
    return raw


# The brief-receipt deviations (CON-12, CON-14..16): which step of the hashing goes wrong.
_BRIEF_FAULTS = {"dlv-breve-keeps-attachments": "keep-named", "dlv-breve-keeps-attached-message": "keep-message",
                 "dlv-breve-hashes-signature": "hash-signature", "dlv-breve-hashes-opaque": "hash-opaque",
                 "dlv-breve-recodes-text": "recode-unnamed"}

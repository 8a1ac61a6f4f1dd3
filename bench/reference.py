"""End-to-end PEC transactions per second between two reference providers on loopback.

One transaction: submission (STARTTLS + AUTH) -> acceptance receipt -> transport envelope (SMTP with
STARTTLS to the other provider) -> presa in carico -> avvenuta consegna, every message signed and
verified. The figure is compared with a baseline measured in the same run on the same machine: the
same number of raw SMTP deliveries (over one STARTTLS session, to a sink that only stores) plus
the same number of CMS signatures, with no PEC logic at all.

    python bench/reference.py [--transactions 200] [--clients 4]
"""

from __future__ import annotations

import argparse
import platform
import resource
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from conformance.pec import cms
from conformance.pec.constants import Kind
from conformance.pec.parse import parse_message
from conformance.pec.samples import sample_original
from conformance.reference.config import load_config
from conformance.reference.deploy import write_deployment
from conformance.reference.provider import ReferenceProvider, free_port

SMTP_PER_TRANSACTION = 4  # submission, envelope, presa in carico, consegna (the acceptance is local)
SIGNATURES_PER_TRANSACTION = 4  # acceptance, envelope, presa in carico, consegna

SENDER, PASSWORD, RECIPIENT = "mario.rossi@pec.alfa.test", "alfa-secret-1", "anna.bianchi@pec.beta.test"


def submission(i: int) -> bytes:
    raw = sample_original(subject=f"Bench {i}", client_msgid=f"<bench.{i}@client.test>", tipo_ricevuta="sintetica")
    return (raw.replace(b"To: anna.bianchi@pec.beta.test, carlo.neri@example.org", b"To: " + RECIPIENT.encode())
            .replace(b"Cc: luigi.verdi@cert.beta.test\r\n", b""))


def pec_run(directory: Path, n: int, clients: int) -> tuple[float, int]:
    timers = {"preavviso": 3600, "timeout": 7200, "window_start": 6000, "scheduler_interval": 1.0,
              "retry_interval": 0.5}
    paths = write_deployment(directory, timers=timers)
    alfa, beta = ReferenceProvider(load_config(paths[0])), ReferenceProvider(load_config(paths[1]))
    alfa.start()
    beta.start()
    ctx = ssl.create_default_context(cafile=str(directory / "pki/ca/ca.pem"))
    ctx.check_hostname = False
    messages = [submission(i) for i in range(n)]

    def client(batch: list[bytes]) -> None:
        with smtplib.SMTP(*alfa.access_address, timeout=60) as s:
            s.starttls(context=ctx)
            s.login(SENDER, PASSWORD)
            for raw in batch:
                s.sendmail(SENDER, [RECIPIENT], raw)

    try:
        start = time.perf_counter()
        # Several users' mail clients submit at once, as on a real access point.
        threads = [threading.Thread(target=client, args=(messages[i::clients],)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 30 + n * 0.5
        # Watch the sender's tracking table (one cheap query), not the mailbox: re-reading a growing
        # Maildir every few milliseconds would tax the very process being measured.
        while time.monotonic() < deadline:
            delivered = alfa.store.tracking_rows("t.consegna_at IS NOT NULL")
            if len(delivered) >= n:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        box = [parse_message(m) for m in alfa.maildirs.messages(SENDER)]
        done = sum(1 for m in box if m.kind is Kind.CONSEGNA_SINTETICA and m.signature.verification.ok)
        presa = sum(1 for _ in alfa.store.events(event="service-notice"))
        if presa < done:
            print(f"warning: {presa} presa in carico for {done} receipts", file=sys.stderr)
        return elapsed, done
    finally:
        alfa.stop()
        beta.stop()


class _Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def baseline_run(directory: Path, n: int, world) -> float:
    """n x (4 raw SMTP deliveries with STARTTLS + 4 signatures), nothing else."""
    tls_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_server.load_cert_chain(str(directory / "pki/tls/cert.pem"), str(directory / "pki/tls/key.pem"))
    client = ssl.create_default_context(cafile=str(directory / "pki/ca/ca.pem"))
    client.check_hostname = False
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=tls_server)
    controller.start()
    key, cert = world
    payload = submission(0)
    try:
        start = time.perf_counter()
        # One STARTTLS session reused for every delivery, as the providers' outbox workers reuse theirs.
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.starttls(context=client)
            for _ in range(n):
                for _ in range(SIGNATURES_PER_TRANSACTION):
                    cms.sign_detached(payload, key, cert)
                for _ in range(SMTP_PER_TRANSACTION):
                    s.sendmail(SENDER, [RECIPIENT], payload)
        elapsed = time.perf_counter() - start
    finally:
        controller.stop()
    assert sink.count == n * SMTP_PER_TRANSACTION
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=1, help="concurrent submitting SMTP sessions")
    args = parser.parse_args()
    n = args.transactions
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        elapsed, done = pec_run(directory / "pec", n, args.clients)
        from cryptography.hazmat.primitives import serialization

        from conformance.pec.pki import load_pki_directory

        layout = load_pki_directory(directory / "pec" / "pki")
        provider = layout.providers[0]
        world = (provider.key, provider.certificate)
        assert serialization  # keys come from the same PKI the providers used
        base = baseline_run(directory / "pec", n, world)
    rate, base_rate = done / elapsed, n / base
    print(f"python {platform.python_version()} on {platform.machine()}, {n} transactions, "
          f"{args.clients} submitting clients")
    print(f"PEC transactions completed: {done}/{n} in {elapsed:.2f} s -> {rate:.1f} transactions/s")
    print(f"baseline ({SMTP_PER_TRANSACTION} raw SMTP deliveries + {SIGNATURES_PER_TRANSACTION} signatures "
          f"per transaction): {base:.2f} s -> {base_rate:.1f} /s")
    print(f"ratio PEC / baseline: {rate / base_rate:.2f}  (goal: >= 0.25, and >= 50 transactions/s)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0 if done == n else 1


if __name__ == "__main__":
    sys.exit(main())

"""Load figures on this machine: the counterpart's ceiling and the built-in target's throughput at
saturation, each with its ratio to a floor measured in the same run.

1. Counterpart ceiling: `--counterparts` counterpart processes (as `pec-conformance load` starts them)
   receive transport envelopes signed by the target's key over persistent STARTTLS sessions and
   answer each with a signed presa in carico and a signed avvenuta consegna, sent to a sink that
   only counts. Answered envelopes per second = envelopes whose consegna reached the sink / time;
   lost = envelopes without one after a bounded drain.
2. Built-in target at saturation: `pec-conformance load` with many users sending as fast as the
   target answers; complete transactions per second (acceptance and delivery receipt in the
   sender's mailbox).
3. Floor: the cost of one raw SMTP delivery over a reused STARTTLS session to a sink that only
   stores, and of one CMS signature, measured here and now; an answered envelope costs at least
   3 deliveries + 2 signatures (envelope in, presa and consegna out), a PEC transaction at least
   4 deliveries + 4 signatures (as in bench/reference.py).

    python bench/load.py [--envelopes 1000] [--counterparts 2] [--senders 4] [--users 8,16,32] [--time 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from reference import _Sink  # bench/reference.py: the counting sink

from conformance.load.run import LoadOptions, run_load
from conformance.load.stack import LOAD_TIMERS, counterpart_domains, start_process, stop_processes
from conformance.pec import build as b
from conformance.pec import cms
from conformance.pec.pki import load_pki_directory
from conformance.pec.samples import sample_original
from conformance.reference.deploy import ProviderPlan, write_deployment
from conformance.reference.provider import free_port
from conformance.runner import COUNTERPART_NAME, TARGET_DOMAINS, TARGET_NAME, TARGET_USERS


def _tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(directory / "pki/tls/cert.pem"), str(directory / "pki/tls/key.pem"))
    client = ssl.create_default_context(cafile=str(directory / "pki/ca/ca.pem"))
    client.check_hostname = False
    return server, client


def envelope(layout, recipient: str) -> bytes:
    """A transport envelope from the target's user to a counterpart user, signed by the target."""
    creds = layout.provider(TARGET_NAME)
    g = b.Gestore(name=TARGET_NAME, domain=TARGET_DOMAINS[0], key=creds.key, certificate=creds.certificate)
    sender = next(iter(TARGET_USERS))
    raw = (sample_original(tipo_ricevuta="sintetica")
           .replace(b"From: Mario Rossi <mario.rossi@pec.alfa.test>", f"From: {sender}".encode())
           .replace(b"To: anna.bianchi@pec.beta.test, carlo.neri@example.org", f"To: {recipient}".encode())
           .replace(b"Cc: luigi.verdi@cert.beta.test\r\n", b""))
    now = datetime.now(UTC)
    o = b.read_original(raw)
    t = b.Transaction.from_original(o, g.new_msgid(now), layout.index.is_pec_domain)
    return b.build_busta_trasporto(g, o, t, now)


def counterpart_ceiling(directory: Path, n: int, processes: int, senders: int) -> tuple[float, int, int]:
    """(seconds, envelopes answered with a consegna, envelopes sent)."""
    domains = counterpart_domains(processes)
    write_deployment(directory, [ProviderPlan(TARGET_NAME, TARGET_DOMAINS, dict(TARGET_USERS)),
                                 ProviderPlan(COUNTERPART_NAME, domains, {f"utente1@{d}": "x" for d in domains})],
                     timers=LOAD_TIMERS)
    layout = load_pki_directory(directory / "pki")
    server_tls, client_tls = _tls(directory)
    sink = _Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, tls_context=server_tls)
    controller.start()
    procs, ports = [], []
    try:
        for i, domain in enumerate(domains):
            port = free_port()
            proc, _ = start_process("counterpart", {
                "pki": str(directory / "pki"), "tls": str(directory), "port": port, "domain": domain,
                "target_incoming": ["127.0.0.1", sink_port], "log": str(directory / f"cp-{i}.jsonl"),
                "sample_every": 1_000_000, "evidence": str(directory / "evidence")}, directory, f"cp-{i}")
            procs.append(proc)
            ports.append((port, f"utente1@{domain}"))
        payloads = [envelope(layout, rcpt) for _, rcpt in ports]
        sender = "posta-certificata@" + TARGET_DOMAINS[0]

        def send(k: int) -> None:
            port, rcpt = ports[k % len(ports)]
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                s.starttls(context=client_tls)
                for _ in range(k, n, senders):
                    s.sendmail(sender, [rcpt], payloads[k % len(ports)])

        start = time.perf_counter()
        threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 30 + n * 0.05
        while sink.count < 2 * n and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        answered = sink.count // 2  # a presa in carico and a consegna per envelope
        return elapsed, answered, n
    finally:
        stop_processes(procs)
        controller.stop()


def floor_costs(directory: Path, n: int) -> tuple[float, float]:
    """Seconds per raw SMTP delivery (reused STARTTLS session, storing sink) and per CMS signature."""
    server_tls, client_tls = _tls(directory)
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=server_tls)
    controller.start()
    layout = load_pki_directory(directory / "pki")
    creds = layout.provider(TARGET_NAME)
    payload = envelope(layout, "utente1@" + counterpart_domains(1)[0])
    try:
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.starttls(context=client_tls)
            for _ in range(n):
                s.sendmail("a@x.test", ["b@y.test"], payload)
        smtp = (time.perf_counter() - start) / n
    finally:
        controller.stop()
    start = time.perf_counter()
    for _ in range(n):
        cms.sign_detached(payload, creds.key, creds.certificate)
    return smtp, (time.perf_counter() - start) / n


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its finished child processes."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envelopes", type=int, default=1000)
    parser.add_argument("--counterparts", type=int, default=2, help="counterpart processes")
    parser.add_argument("--senders", type=int, default=4, help="concurrent SMTP sessions feeding the counterpart")
    parser.add_argument("--users", default="8,16,32",
                        help="Locust users against the built-in target, one run per figure; the best is the saturation")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time", type=float, default=10.0, help="seconds of load against the built-in target")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = _cpu()
        elapsed, answered, sent = counterpart_ceiling(tmp / "cp", args.envelopes, args.counterparts, args.senders)
        spent = [a - b for a, b in zip(_cpu(), before, strict=True)]
        smtp, sign = floor_costs(tmp / "cp", 300)
        ceiling, cp_floor, tx_floor = answered / elapsed, 1 / (3 * smtp + 2 * sign), 1 / (4 * smtp + 4 * sign)
        print(f"floor: {smtp * 1000:.2f} ms per raw SMTP delivery, {sign * 1000:.2f} ms per signature")
        print(f"counterpart ceiling ({args.counterparts} processes, {args.senders} feeding sessions): "
              f"{answered}/{sent} envelopes answered in {elapsed:.2f} s -> {ceiling:.1f} envelopes/s, "
              f"{sent - answered} lost; floor (3 deliveries + 2 signatures) {cp_floor:.1f} /s, "
              f"ratio {ceiling / cp_floor:.2f}  (goal: >= 200/s with 0 lost)", flush=True)
        print(f"  CPU per answered envelope: counterpart processes {1000 * spent[1] / max(answered, 1):.1f} ms "
              f"(start-up included), feeder and sink {1000 * spent[0] / max(answered, 1):.1f} ms; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        runs = []
        for users in (int(u) for u in args.users.split(",")):
            before = _cpu()
            r = run_load(LoadOptions(out=tmp / f"load-{users}", users=users, run_time=args.time, drain=60.0,
                                     workers=args.workers, counterparts=args.counterparts, validate_every=50,
                                     quiet=True))
            window = r["throughput"]["window_s"]
            runs.append((r["totals"]["complete"] / window if window else 0.0, users, r))
            acc, dlv = r["latency"]["accettazione"], r["latency"]["consegna"]
            print(f"  {users} users: {r['totals']['complete']}/{r['totals']['submitted']} complete, "
                  f"{r['totals']['lost']} lost, {runs[-1][0]:.1f} transactions/s; "
                  f"acceptance p95 {acc['p95']} s, delivery p95 {dlv['p95']} s; CPU per transaction "
                  f"{1000 * (sum(_cpu()) - sum(before)) / max(r['totals']['complete'], 1):.1f} ms (all processes, "
                  f"start-up included); load average {os.getloadavg()[0]:.1f}", flush=True)
    target, users, _ = max(runs, key=lambda x: x[0])
    print(f"built-in target at saturation (best of {args.users} users, {args.workers} Locust workers, "
          f"{args.time:g} s each): {target:.1f} transactions/s with {users} users; "
          f"floor (4 deliveries + 4 signatures) {tx_floor:.1f} /s, ratio {target / tx_floor:.2f}")
    errors = [e for _, _, r in runs for e in r["harness_errors"]]
    for e in errors:
        print(f"harness error: {e}", file=sys.stderr)
    lost = sum(r["totals"]["lost"] for _, _, r in runs)
    return 0 if answered == sent and not lost and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

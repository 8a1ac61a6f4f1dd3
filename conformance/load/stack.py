"""The built-in target under load: the reference provider in one process, the counterpart in one or
more, all on loopback and sharing one test PKI and providers index (the same parts `runner.py`
uses for a conformance run, laid out over processes so that two cores can be used and the counterpart
is never the bottleneck).

Counterpart process i serves the counterpart domain i (the first is `runner.COUNTERPART_DOMAINS[0]`),
all domains belonging to the one counterpart provider of the index; the target routes each domain to
its own process. Each counterpart process logs, as JSON lines, every envelope it received (when,
which transaction, whether its origin verified) and every answer it sent, and keeps every
`sample_every`-th envelope as evidence; it keeps no message in memory, so a long run stays small.

    python -m conformance.load.stack provider|counterpart SPEC.json
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..counterpart import Counterpart, SmtpOutcome
from ..pec.pki import load_pki_directory
from ..runner import (
    COUNTERPART_DOMAINS,
    COUNTERPART_NAME,
    TARGET_DOMAINS,
    TARGET_NAME,
    TARGET_USERS,
    _tls_server,
)

# The built-in target's timers under load: 12 h -> 120 s, 24 h -> 240 s. A loaded two-core machine
# may queue receipts for seconds, which must not look like a lost message; the timers still run
# (a long run sees them fire where a message really waits).
LOAD_TIMERS = {"preavviso": 120.0, "timeout": 240.0, "window_start": 180.0, "scheduler_interval": 0.5,
               "retry_interval": 0.3}
READY_TIMEOUT = 60.0


def counterpart_domains(n: int) -> tuple[str, ...]:
    first = COUNTERPART_DOMAINS[0]
    return (first, *(f"pec{i + 1}.{first.split('.', 1)[1]}" for i in range(1, n)))


# ------------------------------------------------------------------------------------------ parent side


@dataclass
class Stack:
    """What a load run needs to know about the running built-in target."""

    work: Path
    access: tuple[str, int]
    incoming: tuple[str, int]
    maildir: Path
    users: dict[str, str]
    domains: list[str]
    counterpart_domains: list[str]
    counterparts: list[tuple[str, int]]
    counterpart_logs: list[Path]
    ca_file: Path
    pki_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def dead(self) -> list[str]:
        """Processes that died (role and exit code), to tell a crash from a slow target."""
        return [f"{p.args[-2]} exited {p.returncode}" for p in self.processes if p.poll() is not None]


def start_process(role: str, spec: dict, work: Path, name: str) -> tuple[subprocess.Popen, dict]:
    """Start `python -m conformance.load.stack ROLE SPEC` and wait (bounded) for its ready file."""
    spec_path = work / f"{name}.json"
    ready = work / f"{name}.ready"
    spec_path.write_text(json.dumps({**spec, "ready": str(ready)}))
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it for its whole life
    proc = subprocess.Popen([sys.executable, "-m", "conformance.load.stack", role, str(spec_path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_processes([proc])
            tail = (work / f"{name}.log").read_text("utf-8", "replace")[-2000:]
            raise RuntimeError(f"the {name} process did not start: {tail}")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def stop_processes(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGTERM, then wait; SIGKILL what is still there at the deadline."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@contextlib.contextmanager
def builtin_stack(work: Path, evidence_dir: Path, *, counterparts: int = 1, faults: list[str] | tuple = (),
                  sample_every: int = 20) -> Iterator[Stack]:
    from ..reference.deploy import ProviderPlan, write_deployment

    work.mkdir(parents=True, exist_ok=True)
    domains = counterpart_domains(max(counterparts, 1))
    plans = [ProviderPlan(TARGET_NAME, TARGET_DOMAINS, dict(TARGET_USERS), list(faults)),
             ProviderPlan(COUNTERPART_NAME, domains, {f"utente1@{d}": "x" for d in domains})]
    paths = write_deployment(work, plans, timers=LOAD_TIMERS)
    from ..reference.provider import free_port

    ports = [free_port() for _ in domains]  # the target's routes name them before the counterparts start
    procs: list[subprocess.Popen] = []
    try:
        provider, info = start_process("provider", {
            "config": str(paths[0]), "faults": list(faults),
            "routes": {d: ["127.0.0.1", p] for d, p in zip(domains, ports, strict=True)}}, work, "provider")
        procs.append(provider)
        logs = []
        for i, (domain, port) in enumerate(zip(domains, ports, strict=True)):
            log = work / f"counterpart-{i}.jsonl"
            proc, _ = start_process("counterpart", {
                "pki": str(work / "pki"), "tls": str(work), "port": port, "domain": domain,
                "target_incoming": info["incoming"], "log": str(log), "sample_every": sample_every,
                "evidence": str(evidence_dir / f"counterpart-{i}")}, work, f"counterpart-{i}")
            procs.append(proc)
            logs.append(log)
        yield Stack(work=work, access=tuple(info["access"]), incoming=tuple(info["incoming"]),
                    maildir=Path(info["maildir"]), users=dict(TARGET_USERS), domains=list(TARGET_DOMAINS),
                    counterpart_domains=list(domains), counterparts=[("127.0.0.1", p) for p in ports],
                    counterpart_logs=logs, ca_file=work / "pki/ca/ca.pem", pki_dir=work / "pki", processes=procs)
    finally:
        stop_processes(list(reversed(procs)))


# ------------------------------------------------------------------------------------------ child side


def _write_ready(path: str, info: dict) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)  # the parent never reads half a file


def _serve_until_stopped() -> None:
    """Until SIGTERM, or until the parent is gone (never outlive the run that started us)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:
            return


def _provider_main(spec: dict) -> None:
    from ..reference.config import load_config
    from ..reference.provider import ReferenceProvider

    config = load_config(Path(spec["config"]))
    for domain, (host, port) in spec["routes"].items():
        config.routes[domain] = (host, int(port))
    provider = ReferenceProvider(config, spec["faults"])
    provider.start()
    try:
        _write_ready(spec["ready"], {"access": provider.access_address, "incoming": provider.incoming_address,
                                     "maildir": str(config.data_dir / "maildir")})
        _serve_until_stopped()
    finally:
        provider.stop()


class LoggingCounterpart(Counterpart):
    """A counterpart that logs what it receives and sends instead of keeping it (see the module text)."""

    def __init__(self, *args, spec: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self._log = open(spec["log"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open while serving
        self._log_lock = threading.Lock()
        self._seen = 0
        self._sample_every = max(int(spec["sample_every"]), 1)
        self._evidence_dir = Path(spec["evidence"])
        self._pending = threading.local()  # the evidence path of the message being received, per thread
        self._smtp: smtplib.SMTP | None = None
        self._session_lock = threading.Lock()
        self.evidence = self._hook

    def _write(self, entry: dict) -> None:
        with self._log_lock:
            self._log.write(json.dumps(entry) + "\n")

    def _hook(self, direction: str, raw: bytes, meta: dict) -> None:
        """Evidence hook: answers are logged; every `sample_every`-th message received is on disk
        (flushed) before its 250, the others only in the log."""
        if direction == "out":
            self._write({"ev": "out", "at": meta["at"], "kind": meta.get("kind"), "related": meta.get("related")})
            return
        with self._log_lock:
            self._seen += 1
            n = self._seen
        self._pending.path = None
        if self._sample_every == 1 or n % self._sample_every == 1:
            self._evidence_dir.mkdir(parents=True, exist_ok=True)
            path = self._evidence_dir / f"{n:06d}-in.eml"
            with open(path, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            self._pending.path = str(path)

    def append(self, item) -> None:  # log the transaction, keep nothing in memory
        d = item.message.daticert
        self._write({"ev": "in", "at": item.at, "kind": str(item.message.kind), "msgid": d.msgid if d else None,
                     "id": d.identificativo if d else None, "rcpts": item.rcpts, "verified": item.verified,
                     "behaviour": item.behaviour, "evidence": getattr(self._pending, "path", None)})
        with self._cond:
            del self.sent[:-100]

    def _send_recorded(self, kind: str, mail_from: str, rcpts: list[str], raw: bytes, *, related: str | None = None,
                       to: tuple[str, int] | None = None, **kwargs) -> SmtpOutcome:
        """Answers go to the target over one STARTTLS session kept open, as a provider's outbound MTA
        keeps its own, rather than a new session per message: a TLS handshake per answer was most of
        the counterpart's cost under load. A broken session is reopened once; a refusal is an error."""
        if related is None or to is not None or self.target_incoming is None:
            return super()._send_recorded(kind, mail_from, rcpts, raw, related=related, to=to, **kwargs)
        self._hook("out", raw, {"at": time.time(), "kind": kind, "related": related})
        with self._session_lock:
            for attempt in (1, 2):
                try:
                    if self._smtp is None:
                        self._smtp = smtplib.SMTP(*self.target_incoming, timeout=30,
                                                  local_hostname=self.credentials.domains[0])
                        self._smtp.starttls(context=self.client_tls)
                    self._smtp.sendmail(mail_from, rcpts, raw)
                    return SmtpOutcome(250, "OK", True)
                except (OSError, smtplib.SMTPException) as exc:
                    self._close_session()
                    if attempt == 2 or isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500:
                        self.errors.append(f"sending {kind} to {rcpts}: {exc!r}")
                        return SmtpOutcome(getattr(exc, "smtp_code", 0), str(exc)[:300], False)
        return SmtpOutcome(0, "unreachable", False)

    def _close_session(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp.close()
            self._smtp = None

    def stop(self) -> None:
        super().stop()
        with self._session_lock:
            self._close_session()
        self._write({"ev": "errors", "errors": list(self.errors)})
        self._log.close()


def _counterpart_main(spec: dict) -> None:
    layout = load_pki_directory(Path(spec["pki"]))
    counterpart = LoggingCounterpart.from_layout(layout, COUNTERPART_NAME, spec=spec,
                                                 tls_context=_tls_server(Path(spec["tls"])), port=int(spec["port"]),
                                                 target_incoming=tuple(spec["target_incoming"]))
    counterpart.start()
    try:
        _write_ready(spec["ready"], {"address": counterpart.address})
        _serve_until_stopped()
    finally:
        counterpart.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("provider", "counterpart"):
        print("usage: python -m conformance.load.stack provider|counterpart SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    (_provider_main if argv[0] == "provider" else _counterpart_main)(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

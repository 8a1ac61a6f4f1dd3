"""`pec-conformance load`: start the built-in target, the Locust master and its workers, watch every
message to its receipts, drain, judge a sample of receipts and write the load report.

Every wait has a deadline: the target's start, the workers' connection, the run itself, the drain,
each process's stop.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.findings import ValidationContext, Verdict
from ..checks.validator import check
from ..engine.evidence import EvidenceStore
from ..engine.profile import ProfileError
from ..pec.constants import Kind
from ..pec.pki import load_pki_directory
from ..reference.provider import free_port
from . import report as load_report
from .observe import CONSEGNE, NON_DELIVERY, Box, MailboxWatch, read_counterpart_logs
from .stack import builtin_stack, stop_processes

SMTP_TIMEOUT = 30.0
MASTER_MARGIN = 120.0  # workers' start and connection, the users' last submissions, the records' transfer


@dataclass
class LoadOptions:
    out: Path
    users: int = 10
    rate: float = 0.0  # messages per second over all users; 0: each user sends as fast as it can
    run_time: float = 10.0
    drain: float = 30.0
    workers: int = 2
    expect_workers: int | None = None  # workers on other machines too (--master); default: the local ones
    master_bind: str = "127.0.0.1"
    master_port: int = 0
    counterparts: int = 1
    local_share: float = 0.0
    recipients: int = 1
    variants: dict[str, float] = field(default_factory=lambda: {"completa": 1.0, "breve": 1.0, "sintetica": 1.0})
    sizes: list[int] = field(default_factory=lambda: [2_000])
    faults: list[str] = field(default_factory=list)
    validate_every: int = 20
    spawn_rate: float | None = None
    thresholds: dict = field(default_factory=dict)
    quiet: bool = False
    target: Path | None = None  # a target profile; None: the built-in target
    counterpart_pki: Path | None = None


def _say(opts: LoadOptions, text: str) -> None:
    if not opts.quiet:
        print(text, file=sys.stderr, flush=True)


def outstanding(submissions: list[dict], arrivals) -> int:
    """Receipts still awaited: an acceptance per message and, per recipient, a delivery receipt or a
    notice that none will come."""
    settled: set[tuple[str, str]] = set()
    for a in arrivals:
        if a.msgid is None:
            continue
        if a.kind == "accettazione":
            settled.add((a.msgid, ""))
        elif (a.kind in CONSEGNE or a.kind in NON_DELIVERY) and a.recipient:
            settled.add((a.msgid, a.recipient.lower()))
    wanted = 0
    for r in submissions:
        if 200 <= r["code"] < 300:
            wanted += ((r["mid"], "") not in settled) + sum((r["mid"], x.lower()) not in settled for x in r["rcpts"])
    return wanted


def judge_samples(samples: list[tuple[str, str]], out: Path, ctx: ValidationContext) -> list[dict]:
    """The validator on every sampled message the target made: FAIL, ERROR and WARN findings."""
    findings = []
    for rel, kind in samples:
        raw = (out / rel).read_bytes()
        for f in check(raw, ctx).findings:
            if f.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.WARN):
                findings.append({"kind": kind, "evidence": rel, "requirements": list(f.requirements),
                                 "verdict": str(f.verdict), "message": f.message})
    return findings


def _spawn_swarm(opts: LoadOptions, work: Path, plan: dict) -> tuple[subprocess.Popen, list[subprocess.Popen]]:
    port = opts.master_port or free_port()
    (work / "plan.json").write_text(json.dumps(plan))
    expected = opts.expect_workers if opts.expect_workers is not None else opts.workers
    base = [sys.executable, "-m", "conformance.load.swarm"]
    log = open(work / "master.log", "wb")  # noqa: SIM115 - the child writes it for its whole life
    master = subprocess.Popen(base + ["master", "--plan", str(work / "plan.json"), "--out", str(work),
                                      "--bind", opts.master_bind, "--port", str(port), "--workers", str(expected),
                                      "--users", str(opts.users), "--spawn-rate",
                                      str(opts.spawn_rate or max(opts.users, 1)), "--run-time", str(opts.run_time)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    workers = []
    for i in range(opts.workers):
        log = open(work / f"worker-{i}.log", "wb")  # noqa: SIM115
        workers.append(subprocess.Popen(base + ["worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log.close()
    return master, workers


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@dataclass
class Target:
    """What the run needs from a target, whichever it is."""

    description: str
    plan: dict  # the target's part of the Locust plan: endpoints, users, recipients
    boxes: list[Box]
    domains: list[str]
    validation: ValidationContext
    client_tls: ssl.SSLContext | None
    dead: Callable[[], list[str]]
    # After the drain: envelopes the counterpart received, answers it sent, its errors, sampled envelopes.
    counterpart: Callable[[], tuple[list[dict], list[dict], list[str], list[tuple[str, str]]]]


@contextlib.contextmanager
def builtin(opts: LoadOptions, work: Path, out: Path) -> Iterator[Target]:
    """The reference provider and `opts.counterparts` counterpart processes on loopback."""
    _say(opts, f"starting the built-in target ({opts.counterparts} counterpart processes)")
    with builtin_stack(work / "stack", out / "evidence", counterparts=opts.counterparts, faults=opts.faults,
                       sample_every=opts.validate_every) as st:
        layout = load_pki_directory(st.pki_dir)

        def counterpart():
            envelopes, answers, errors = read_counterpart_logs(st.counterpart_logs)
            samples = [(str(Path(e["evidence"]).relative_to(out)), e.get("kind") or "busta-trasporto")
                       for e in envelopes if e.get("evidence")]
            return envelopes, answers, errors, samples

        yield Target(
            description="built-in reference provider (loopback)",
            plan={"access": list(st.access), "access_tls": "starttls", "ca_pem": st.ca_file.read_text(),
                  "senders": [list(x) for x in st.users.items()], "local": list(st.users),
                  "counterpart": [f"utente{k}@{d}" for d in st.counterpart_domains for k in (1, 2, 3)]},
            boxes=[Box(a, f"maildir://{st.maildir / a}") for a in st.users], domains=st.domains,
            validation=ValidationContext(index=layout.index, ca_certificates=[layout.ca.certificate],
                                         crls=[layout.crl]),
            client_tls=None, dead=st.dead, counterpart=counterpart)


@contextlib.contextmanager
def profile(opts: LoadOptions, evidence: EvidenceStore, profile_path: Path, pki_dir: Path) -> Iterator[Target]:
    """A deployment a profile describes: the counterpart (one, where the profile routes its domain) runs
    in this process, as for `pec-conformance run`."""
    from ..engine.profile import load_profile
    from ..runner import profile_target

    prof = load_profile(profile_path)
    with profile_target(prof, evidence.out_dir, 1.0, pki_dir) as world:
        cp = world.counterpart
        users = [(m.address, m.secret()) for m in prof.mailboxes]
        missing = [a for a, secret in users if secret is None]
        if missing:
            raise RuntimeError(f"no password for {', '.join(missing)} (set the variables the profile names)")

        def counterpart():
            envelopes, samples = [], []
            for i, item in enumerate(cp.matching(lambda r: True)):
                d = item.message.daticert
                entry = {"at": item.at, "kind": str(item.message.kind), "msgid": d.msgid if d else None,
                         "rcpts": item.rcpts, "verified": item.verified}
                if i % opts.validate_every == 0 and item.message.kind is Kind.BUSTA_TRASPORTO:
                    samples.append((evidence.write("load", "in", "busta-trasporto", item.raw), "busta-trasporto"))
                envelopes.append(entry)
            answers = [{"at": s.at, "kind": s.kind, "related": s.related} for s in cp.sent_matching(lambda s: True)]
            return envelopes, answers, list(cp.errors), samples

        yield Target(
            description=f"{prof.name} ({profile_path})",
            plan={"access": list(prof.access), "access_tls": prof.access_tls,
                  "ca_pem": prof.ca_file.read_text() if prof.ca_file else None, "senders": [list(u) for u in users],
                  "local": [a for a, _ in users], "counterpart": list(world.counterpart_users)},
            boxes=[Box(a, m.url, secret) for (a, secret), m in zip(users, prof.mailboxes, strict=True)],
            domains=list(prof.domains), validation=world.validation, client_tls=world.client_tls,
            dead=lambda: [], counterpart=counterpart)


def run_load(opts: LoadOptions) -> dict:
    """Run the load (against the profile's target, else the built-in one); return the report, also
    written to `opts.out`."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    evidence = EvidenceStore(out)
    work = Path(tempfile.mkdtemp(prefix="pec-load-"))
    started = time.time()
    harness: list[str] = []
    submissions: list[dict] = []
    swarm: dict = {}
    arrivals, samples, envelopes, answers, cp_errors, findings = [], [], [], [], [], []
    parameters = {"target": "", "users": opts.users, "rate": opts.rate,
                  "run_time": opts.run_time, "drain": opts.drain,
                  "workers": opts.expect_workers if opts.expect_workers is not None else opts.workers,
                  "counterparts": 1 if opts.target else opts.counterparts,
                  "mix": {"local_share": opts.local_share, "recipients": opts.recipients, "variants": opts.variants,
                          "sizes": opts.sizes},
                  "faults": list(opts.faults), "validate_every": opts.validate_every}
    try:
        world = (profile(opts, evidence, opts.target, opts.counterpart_pki) if opts.target
                 else builtin(opts, work, out))
        with world as target:
            parameters["target"] = target.description
            plan = {**target.plan, "smtp_timeout": SMTP_TIMEOUT,
                    "rate_per_user": opts.rate / opts.users if opts.rate and opts.users else 0.0,
                    "mix": {"local_share": opts.local_share, "recipients": opts.recipients,
                            "variants": opts.variants, "sizes": opts.sizes}}
            watch = MailboxWatch(target.boxes, evidence=evidence, target_domains=target.domains,
                                 sample_every=opts.validate_every, client_tls=target.client_tls,
                                 # a remote mailbox is one login per poll: once a second, not ten times
                                 poll=0.1 if all(b.url.startswith("maildir:") for b in target.boxes) else 1.0,
                                 ).start()
            master, workers = _spawn_swarm(opts, work, plan)
            _say(opts, f"Locust master and {opts.workers} workers: {opts.users} users for {opts.run_time:g} s")
            try:
                master.wait(opts.run_time + MASTER_MARGIN)
            except subprocess.TimeoutExpired:
                harness.append("the Locust master did not finish in time")
            stop_processes([master, *workers], timeout=15)
            submissions = _read_jsonl(work / "submissions.jsonl")
            swarm = json.loads((work / "swarm.json").read_text()) if (work / "swarm.json").exists() else {}
            if swarm.get("error"):
                harness.append(f"Locust: {swarm['error']}")
            if not swarm:
                tail = (work / "master.log").read_text("utf-8", "replace")[-1500:]
                harness.append(f"the Locust master left no result: {tail}")
            accepted = sum(1 for r in submissions if 200 <= r["code"] < 300)
            _say(opts, f"{len(submissions)} submissions ({accepted} accepted); draining up to {opts.drain:g} s")
            deadline = time.monotonic() + opts.drain
            while outstanding(submissions, watch.snapshot()) and time.monotonic() < deadline:
                if target.dead():
                    harness.append(f"the target died: {', '.join(target.dead())}")
                    break
                time.sleep(0.25)
            watch.stop()
            arrivals, samples = watch.snapshot(), list(watch.samples)
            harness += watch.errors[:20]
        # After the counterparts stopped: everything they logged, their errors included.
        envelopes, answers, cp_errors, sampled_envelopes = target.counterpart()
        samples += sampled_envelopes
        findings = judge_samples(samples, out, target.validation)
    except (RuntimeError, OSError, ProfileError) as exc:
        harness.append(str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    inputs = load_report.Inputs(parameters=parameters, submissions=submissions, arrivals=arrivals,
                                envelopes=envelopes, answers=answers, counterpart_errors=cp_errors,
                                findings=findings, sampled=len(samples), swarm=swarm, harness_errors=harness,
                                started=started, finished=time.time())
    report = load_report.build(inputs, opts.thresholds)
    load_report.write(report, out)
    return report

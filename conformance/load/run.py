"""`pec-conformance load`: start the built-in target, the Locust master and its workers, watch every
message to its receipts, drain, judge a sample of receipts and write the load report.

Every wait has a deadline: the target's start, the workers' connection, the run itself, the drain,
each process's stop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.findings import ValidationContext, Verdict
from ..checks.validator import check
from ..engine.evidence import EvidenceStore
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


def run_load(opts: LoadOptions) -> dict:
    """Run the load against the built-in target; return the report (also written to `opts.out`)."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    evidence = EvidenceStore(out)
    work = Path(tempfile.mkdtemp(prefix="pec-load-"))
    started = time.time()
    harness: list[str] = []
    submissions: list[dict] = []
    swarm: dict = {}
    arrivals, samples, envelopes, answers, cp_errors, findings = [], [], [], [], [], []
    parameters = {"target": "built-in reference provider (loopback)", "users": opts.users, "rate": opts.rate,
                  "run_time": opts.run_time, "drain": opts.drain,
                  "workers": opts.expect_workers if opts.expect_workers is not None else opts.workers,
                  "counterparts": opts.counterparts,
                  "mix": {"local_share": opts.local_share, "recipients": opts.recipients, "variants": opts.variants,
                          "sizes": opts.sizes},
                  "faults": list(opts.faults), "validate_every": opts.validate_every}
    try:
        _say(opts, f"starting the built-in target ({opts.counterparts} counterpart processes)")
        with builtin_stack(work / "stack", out / "evidence", counterparts=opts.counterparts, faults=opts.faults,
                           sample_every=opts.validate_every) as st:
            layout = load_pki_directory(st.pki_dir)
            ctx = ValidationContext(index=layout.index, ca_certificates=[layout.ca.certificate], crls=[layout.crl])
            cp_users = [f"utente{k}@{d}" for d in st.counterpart_domains for k in (1, 2, 3)]
            plan = {"access": list(st.access), "access_tls": "starttls", "ca_pem": st.ca_file.read_text(),
                    "senders": [list(x) for x in st.users.items()], "counterpart": cp_users,
                    "local": list(st.users), "smtp_timeout": SMTP_TIMEOUT,
                    "rate_per_user": opts.rate / opts.users if opts.rate and opts.users else 0.0,
                    "mix": {"local_share": opts.local_share, "recipients": opts.recipients,
                            "variants": opts.variants, "sizes": opts.sizes}}
            watch = MailboxWatch([Box(a, f"maildir://{st.maildir / a}") for a in st.users], evidence=evidence,
                                 target_domains=st.domains, sample_every=opts.validate_every).start()
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
                if st.dead():
                    harness.append(f"the target died: {', '.join(st.dead())}")
                    break
                time.sleep(0.25)
            watch.stop()
            arrivals, samples = watch.snapshot(), list(watch.samples)
            harness += watch.errors[:20]
        envelopes, answers, cp_errors = read_counterpart_logs(sorted((work / "stack").glob("counterpart-*.jsonl")))
        for e in envelopes:  # the target's own envelopes, sampled by the counterpart processes
            if e.get("evidence"):
                samples.append((str(Path(e["evidence"]).relative_to(out)), e.get("kind") or "busta-trasporto"))
        findings = judge_samples(samples, out, ctx) if samples else []
    except (RuntimeError, OSError) as exc:
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

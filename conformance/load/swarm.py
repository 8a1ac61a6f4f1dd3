"""Locust master and workers: the simulated users of the target. The only processes that import Locust
(and so gevent's monkey-patching, which must not reach the asyncio servers of the target and the
counterpart: those run in processes of their own).

The master waits for its workers, sends them the plan (a Locust custom message, so workers on other
machines need nothing but the master's address), runs the users for the given time, stops them
(each finishes the submission it is in), collects every submission record and writes them as JSON
lines. Each user submits one message per task over a fresh SMTP session (STARTTLS, AUTH), as a mail
client does, and records when the access point answered.

    python -m conformance.load.swarm master --plan PLAN.json --out DIR --port P [--bind H] --workers N
                                            --users U --spawn-rate R --run-time S
    python -m conformance.load.swarm worker --master-host H --master-port P
"""

from __future__ import annotations

# ruff: noqa: I001  (Locust first, on purpose)

# Locust patches the standard library with gevent on import: it must be imported before anything else.
import locust
from locust import User, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.user.wait_time import constant_throughput

import argparse
import json
import random
import secrets
import smtplib
import ssl
import sys
import time
from pathlib import Path

import gevent

from ..pec.mime import fold
from ..pec.samples import sample_original

PLAN: dict = {}
RECORDS: list[dict] = []
PLAN_TIMEOUT = 30.0
WORKER_TIMEOUT = 60.0
FLUSH_EVERY = 1.0


# ------------------------------------------------------------------------------------------ messages


def build_message(sender: str, to: list[str], *, tipo: str, size: int, msgid: str) -> bytes:
    """A user's message from the project's own sample, re-addressed; `size` bytes of attachment."""
    filler = (b"PEC load test attachment line.\n" * (size // 31 + 1))[:size]
    raw = sample_original(tipo_ricevuta=tipo, client_msgid=msgid, attachment=filler,
                          subject=f"Prova di carico {msgid.strip('<>')}")
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"to:", b"cc:", b"from:"))]
    top = [f"From: {sender}".encode(), fold("To", ", ".join(to)).rstrip(b"\r\n")]
    return b"\r\n".join(top + lines) + b"\r\n\r\n" + body


def choose(plan: dict, rng: random.Random) -> tuple[str, str, list[str], str, int]:
    """Sender, password, recipients, receipt variant, attachment size, drawn from the plan's mix."""
    sender, password = rng.choice(plan["senders"])
    mix = plan["mix"]
    local = [a for a in plan["local"] if a != sender] or plan["local"]
    rcpts: list[str] = []
    for _ in range(mix["recipients"]):
        local_first = bool(local) and (rng.random() < mix["local_share"] or not plan["counterpart"])
        pools = (local, plan["counterpart"]) if local_first else (plan["counterpart"], local)
        fresh = [a for a in pools[0] if a not in rcpts] or [a for a in pools[1] if a not in rcpts]
        if not fresh:
            break  # more recipients asked for than there are addresses: each one once
        rcpts.append(rng.choice(fresh))
    variants = mix["variants"]
    tipo = rng.choices(list(variants), weights=list(variants.values()))[0]
    return sender, password, rcpts, tipo, rng.choice(mix["sizes"])


def submit(plan: dict, ctx: ssl.SSLContext, sender: str, password: str, rcpts: list[str],
           raw: bytes) -> tuple[int, str]:
    host, port = plan["access"]
    try:
        if plan["access_tls"] == "implicit":
            smtp = smtplib.SMTP_SSL(host, port, timeout=plan["smtp_timeout"], context=ctx)
        else:
            smtp = smtplib.SMTP(host, port, timeout=plan["smtp_timeout"])
        with smtp:
            if plan["access_tls"] != "implicit":
                smtp.starttls(context=ctx)
            smtp.login(sender, password)
            refused = smtp.sendmail(sender, rcpts, raw)
        return (250, "accepted") if not refused else (250, f"some recipients refused: {refused}")
    except smtplib.SMTPRecipientsRefused as exc:
        return min(c for c, _ in exc.recipients.values()), str(exc.recipients)[:300]
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
        return exc.smtp_code, text[:300]
    except (OSError, smtplib.SMTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"[:300]


class PecUser(User):
    """A user of the target: one PEC message per task."""

    def on_start(self) -> None:
        deadline = time.monotonic() + PLAN_TIMEOUT
        while not PLAN and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if not PLAN:
            raise StopUser()
        self.plan = PLAN
        self.rng = random.Random(secrets.randbits(64))
        self.ctx = ssl.create_default_context(cadata=PLAN["ca_pem"] or None)
        self.ctx.check_hostname = False  # loopback endpoints are addresses; the chain is still verified
        rate = float(PLAN["rate_per_user"])
        self._pace = constant_throughput(rate) if rate > 0 else None
        self.token = secrets.token_hex(4)
        self.count = 0

    def wait_time(self) -> float:
        return self._pace(self) if getattr(self, "_pace", None) else 0.0

    @task
    def send_one(self) -> None:
        self.count += 1
        sender, password, rcpts, tipo, size = choose(self.plan, self.rng)
        msgid = f"<load.{self.token}.{self.count}@suite.test>"
        raw = build_message(sender, rcpts, tipo=tipo, size=size, msgid=msgid)
        start = time.time()
        code, text = submit(self.plan, self.ctx, sender, password, rcpts, raw)
        reply_at = time.time()
        RECORDS.append({"mid": msgid, "sender": sender, "rcpts": rcpts, "variant": tipo, "size": len(raw),
                        "start": start, "reply_at": reply_at, "code": code, "text": text})
        events.request.fire(request_type="SMTP", name="submission", response_time=(reply_at - start) * 1000,
                            response_length=len(raw), exception=None if 200 <= code < 300 else RuntimeError(text),
                            context={})


# ------------------------------------------------------------------------------------------ worker


def _flush(runner) -> None:
    if RECORDS:
        batch = RECORDS[:]
        del RECORDS[: len(batch)]
        runner.send_message("pec_records", batch)


def worker(master_host: str, master_port: int) -> int:
    env = Environment(user_classes=[PecUser], events=events)
    runner = env.create_worker_runner(master_host, master_port)
    runner.register_message("pec_plan", lambda environment, msg, **kw: PLAN.update(msg.data))

    @events.test_stop.add_listener
    def _stopped(environment, **kw) -> None:  # every record reaches the master before "done"
        _flush(runner)
        runner.send_message("pec_done", {"node": runner.client_id})

    def flusher() -> None:
        while True:
            gevent.sleep(FLUSH_EVERY)
            _flush(runner)

    gevent.spawn(flusher)
    runner.greenlet.join()
    return 0


# ------------------------------------------------------------------------------------------ master


def master(args: argparse.Namespace) -> int:
    plan = json.loads(Path(args.plan).read_text())
    env = Environment(user_classes=[PecUser], events=events, stop_timeout=plan["smtp_timeout"])
    runner = env.create_master_runner(master_bind_host=args.bind, master_bind_port=args.port)
    out = Path(args.out)
    records: list[dict] = []
    done: set[str] = set()
    runner.register_message("pec_records", lambda environment, msg, **kw: records.extend(msg.data))
    runner.register_message("pec_done", lambda environment, msg, **kw: done.add(msg.node_id))
    status = {"workers_expected": args.workers, "workers": 0, "error": None}
    deadline = time.monotonic() + WORKER_TIMEOUT
    while runner.worker_count < args.workers and time.monotonic() < deadline:
        gevent.sleep(0.1)
    status["workers"] = runner.worker_count
    if runner.worker_count < args.workers:
        status["error"] = f"{runner.worker_count} of {args.workers} workers connected in {WORKER_TIMEOUT:.0f} s"
    else:
        runner.send_message("pec_plan", plan)
        status["started"] = time.time()
        runner.start(args.users, spawn_rate=args.spawn_rate)
        gevent.sleep(args.run_time)
        status["stopping"] = time.time()
        runner.stop()
        deadline = time.monotonic() + plan["smtp_timeout"] + 10
        while len(done) < status["workers"] and time.monotonic() < deadline:
            gevent.sleep(0.1)
        status["stopped"] = time.time()
        if len(done) < status["workers"]:
            status["error"] = f"{status['workers'] - len(done)} workers did not report their last records"
    total = env.stats.total
    status["locust"] = {"version": locust.__version__, "requests": total.num_requests,
                        "failures": total.num_failures, "median_ms": total.median_response_time,
                        "p95_ms": total.get_response_time_percentile(0.95) if total.num_requests else 0,
                        "max_ms": total.max_response_time or 0}
    with open(out / "submissions.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    (out / "swarm.json").write_text(json.dumps(status))
    runner.quit()
    return 0 if status["error"] is None else 3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.load.swarm")
    sub = parser.add_subparsers(dest="role", required=True)
    m = sub.add_parser("master")
    m.add_argument("--plan", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--bind", default="127.0.0.1")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--workers", type=int, required=True)
    m.add_argument("--users", type=int, required=True)
    m.add_argument("--spawn-rate", type=float, required=True)
    m.add_argument("--run-time", type=float, required=True)
    w = sub.add_parser("worker")
    w.add_argument("--master-host", default="127.0.0.1")
    w.add_argument("--master-port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "worker":
        return worker(args.master_host, args.master_port)
    return master(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

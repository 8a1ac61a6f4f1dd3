"""`pec-conformance probe`: one PEC transaction per interval against a target, each result appended to a
JSON-lines file, and the availability and acceptance-latency figures over the window (AVL-01: the
decree asks for at least 99.8 % availability and an acceptance receipt within the agreed term).

A transaction: a user submits to a counterpart mailbox (STARTTLS, AUTH), then the acceptance receipt
and the delivery receipt are awaited in the user's mailbox, each with a deadline; every message is
saved as evidence and judged by the validator (the scenario engine's vocabulary). It counts as
available when the access point took the message and the acceptance receipt came within the term.

Bounded (`count`, `duration`), stoppable (the event: SIGINT or SIGTERM finish the transaction under
way, then stop) and resumable: started again on the same file it goes on where it stopped, and
the figures cover every line of the file.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ..engine import core
from ..pec.constants import Kind
from .report import percentiles

SPEC = dict(family="probe", title="Availability probe", requirements=("AVL-01",),
            story="a user submits one message to a counterpart mailbox; the acceptance and the delivery "
                  "receipt are awaited in the user's mailbox")


def read_results(path: Path) -> list[dict]:
    """Every complete line of the file (a line cut by a crash is ignored)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def transaction(world: core.World, seq: int, within: float) -> dict:
    spec = core.Scenario(id=f"probe-{seq:06d}", func=lambda ctx: None, **SPEC)
    ctx = core.ScenarioContext(world, spec)
    result: dict = {"seq": seq, "at": round(time.time(), 3), "ok": False, "accepted": False, "accept_s": None,
                    "delivery_s": None, "error": None, "fail": []}
    try:
        raw = ctx.original(ctx.peer(0), tipo="breve", subject="Sonda di disponibilita")
        outcome = ctx.submit(raw, [ctx.peer(0)])
        replied = time.time()
        result["accepted"] = outcome.accepted
        if not outcome.accepted:
            result["error"] = f"submission refused: {outcome.code} {outcome.text}"[:300]
            return result
        if ctx.wait_mailbox(0, Kind.ACCETTAZIONE, within=within):
            result["accept_s"] = round(time.time() - replied, 3)
            result["ok"] = True
        else:
            result["error"] = f"no acceptance receipt within {within:g} s"
        if ctx.wait_mailbox(0, Kind.CONSEGNA_BREVE, within=within):
            result["delivery_s"] = round(time.time() - replied, 3)
    except (core.HarnessError, core.TargetFailure, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
    result["fail"] = sorted({r for f in ctx.findings if str(f.verdict) == "FAIL" for r in f.requirements})
    return result


def summary(results: list[dict]) -> dict:
    ok = [r for r in results if r.get("ok")]
    return {"transactions": len(results), "available": len(ok),
            "availability": round(100 * len(ok) / len(results), 3) if results else None,
            "first": results[0]["at"] if results else None, "last": results[-1]["at"] if results else None,
            "acceptance": percentiles([r["accept_s"] for r in ok if r.get("accept_s") is not None]),
            "delivery": percentiles([r["delivery_s"] for r in results if r.get("delivery_s") is not None]),
            "with_fail": sum(1 for r in results if r.get("fail"))}


def run_probe(world: core.World, path: Path, *, every: float, count: int | None, duration: float,
              within: float, stop: threading.Event, on_result=None) -> dict:
    """Probe until `count` more transactions, `duration` seconds or `stop`; every wait bounded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = read_results(path)
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n")  # close a line cut by a crash, so the next result stands on its own line
    seq = (previous[-1]["seq"] + 1) if previous else 0
    end = time.monotonic() + duration
    if previous:  # resumed: keep the cadence of the file, never two probes closer than `every`
        stop.wait(min(max(previous[-1]["at"] + every - time.time(), 0.0), max(end - time.monotonic(), 0.0)))
    done = 0
    while not stop.is_set() and time.monotonic() < end and (count is None or done < count):
        began = time.monotonic()
        result = transaction(world, seq, within)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
        if on_result is not None:
            on_result(result)
        seq, done = seq + 1, done + 1
        if count is not None and done >= count:
            break
        stop.wait(min(max(every - (time.monotonic() - began), 0.0), max(end - time.monotonic(), 0.0)))
    return summary(read_results(path))

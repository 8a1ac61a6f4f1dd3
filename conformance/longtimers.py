"""Real 12 h and 24 h timers: the counterpart as a long-lived service, a run that starts the timer
scenarios and exits, and `resume` that later collects, judges and writes the reports.

    pec-conformance counterpart serve --profile P --counterpart-pki PKI --state STATE &
    pec-conformance run --long-timers --target P --counterpart-pki PKI --counterpart-state STATE --out RUN
    ... 24 hours (the target's own timers) ...
    pec-conformance resume RUN

`run --long-timers` submits each scenario's message, checks the acceptance and that the envelope reached
the service, and records in `RUN/waiting.json` what it waits for and until when. The service keeps every
message it receives on disk and answers as the run asked (behaviours on disk), so either process may be
restarted in between. `resume` reads the target's notices from the user's mailbox and judges their
timing by the instant each notice declares (its Date, to the second): the suite was not watching when
they arrived.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from .checks.findings import Finding, ValidationContext, Verdict
from .counterpart import OrdinaryDomain
from .counterpart.service import PersistentCounterpart, RemoteCounterpart, RemoteOrdinary, StateStore
from .engine import core
from .engine.evidence import EvidenceStore
from .engine.profile import ProfileError, TargetProfile, load_profile
from .pec.constants import Kind

WAITING = "waiting.json"
DATE_RESOLUTION = 1.0  # a notice's declared instant is to the second


# ------------------------------------------------------------------------------------------ the service


def serve_counterpart(profile: TargetProfile, pki_dir: Path, state_dir: Path, *, ready_file: Path | None = None,
                      stop: threading.Event | None = None) -> int:
    """Run the counterpart and the ordinary domain where the profile routes them, state in `state_dir`,
    until SIGTERM or SIGINT (or `stop`)."""
    from .runner import _profile_trust, _tls_server

    try:
        layout, index, cas, crls = _profile_trust(profile, pki_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ProfileError(str(exc)) from None
    store = StateStore(state_dir, create=True)
    tls = _tls_server(pki_dir.parent) if (pki_dir.parent / "pki/tls/cert.pem").exists() else None
    host, port = profile.counterpart_listen
    counterpart = PersistentCounterpart(layout.providers[0], index=index, ca_certificates=cas, crls=crls,
                                        tls_context=tls, target_incoming=profile.incoming, host=host, port=port,
                                        evidence=store.hook("counterpart"), store=store)
    ordinary = OrdinaryDomain((profile.ordinary_domain,), target_incoming=profile.incoming,
                              host=profile.ordinary_listen[0], port=profile.ordinary_listen[1],
                              evidence=store.hook("ordinary"))
    stop = stop or threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    counterpart.start()
    ordinary.start()
    try:
        print(f"counterpart {layout.providers[0].provider_name} on {host}:{counterpart.port}, ordinary domain "
              f"{profile.ordinary_domain} on {profile.ordinary_listen[0]}:{ordinary.port}; state in {state_dir}",
              flush=True)
        if ready_file is not None:
            ready_file.write_text(f"{host}:{counterpart.port} {profile.ordinary_listen[0]}:{ordinary.port}\n")
        while not stop.wait(0.5):
            pass
    finally:
        counterpart.stop()
        ordinary.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


# ------------------------------------------------------------------------------------------ the scenarios


@dataclass(frozen=True)
class LongScenario:
    id: str
    title: str
    story: str
    requirements: tuple[str, ...]
    behaviour: str
    judge: Callable[[core.ScenarioContext, dict, list], None]


def _declared(cap: core.Captured) -> float | None:
    try:
        return parsedate_to_datetime(cap.message.header("date")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _timing(ctx: core.ScenarioContext, rec: dict, cap: core.Captured) -> float | None:
    at = _declared(cap)
    return None if at is None else at - rec["early"]


def _judge_24h(ctx: core.ScenarioContext, rec: dict, n24: list) -> None:
    from .scenarios.timeouts import _code

    rcpt, tol = rec["rcpt"], rec["tol"]
    ctx.verdict("TMO-03", len(n24) == 1, f"one 24 h notice for {rcpt} reaches the sender", expected="1",
                actual=str(len(n24)), decision="D26")
    if n24:
        t = _timing(ctx, rec, n24[0])
        ctx.verdict("TMO-03", t is not None and rec["window"] - tol <= t <= rec["timeout"] + tol,
                    "the 24 h notice comes inside the 22-24 h window (by the instant it declares)", decision="D27",
                    expected=f"[{rec['window']:g}, {rec['timeout']:g}] s",
                    actual="no readable Date" if t is None else f"{t:.0f} s after dispatch")
        ctx.verdict("NOT-04", _code(n24[0]) == "5.4.1", "the 24 h notice carries the code 5.4.1", soft=True,
                    decision="D18", actual=n24[0].message.daticert.errore_esteso)


def _judge_silent(ctx: core.ScenarioContext, rec: dict, caps: list) -> None:
    from .scenarios.timeouts import _of

    rcpt, tol = rec["rcpt"], rec["tol"]
    n12, n24 = _of(caps, Kind.PREAVVISO_12H, rcpt), _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt)
    ctx.verdict(("TMO-02", "TMO-06"), len(n12) == 1, f"one 12 h notice for {rcpt} reaches the sender",
                expected="1", actual=str(len(n12)), decision="D26")
    if n12:
        t = _timing(ctx, rec, n12[0])
        ctx.verdict("TMO-02", t is not None and t >= rec["preavviso"] - tol,
                    "the 12 h notice comes after preavviso, not before (by the instant it declares)",
                    expected=f">= {rec['preavviso']:g} s",
                    actual="no readable Date" if t is None else f"{t:.0f} s after dispatch")
    _judge_24h(ctx, rec, n24)


def _judge_presa_only(ctx: core.ScenarioContext, rec: dict, caps: list) -> None:
    from .scenarios.timeouts import _of

    rcpt = rec["rcpt"]
    presa = ctx.world.counterpart.sent_matching(
        lambda s: s.kind == str(Kind.PRESA_IN_CARICO) and s.related == rec.get("identificativo"))
    if not presa:
        raise core.HarnessError("the counterpart service sent no presa in carico for the envelope")
    n12, n24 = _of(caps, Kind.PREAVVISO_12H, rcpt), _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt)
    ctx.verdict("TMO-04", not n12, f"no 12 h notice for {rcpt}: its presa in carico came in time", expected="0",
                actual=str(len(n12)))
    _judge_24h(ctx, rec, n24)


LONG_SCENARIOS: dict[str, LongScenario] = {s.id: s for s in (
    LongScenario("long.silent", "No answer at all, on the target's real timers",
                 "A user sends to a counterpart mailbox that never answers; after preavviso the sender gets one "
                 "12 h notice and inside the 22-24 h window one 24 h notice.",
                 ("ACC-17", "MUL-02", "TMO-02", "TMO-03", "TMO-06", "NOT-04"), "silent", _judge_silent),
    LongScenario("long.presa-only", "Presa in carico, no consegna, on the target's real timers",
                 "The counterpart takes the envelope in charge and never delivers: no 12 h notice, one 24 h notice "
                 "inside the window.", ("ACC-17", "MUL-02", "TMO-04", "TMO-03", "NOT-04"), "presa-only",
                 _judge_presa_only),
)}


def _spec(s: LongScenario, func) -> core.Scenario:
    return core.Scenario(s.id, "long", s.title, s.story, s.requirements, func, (), True)


# ------------------------------------------------------------------------------------------ the world


def remote_world(profile: TargetProfile, pki_dir: Path, state_dir: Path, out: Path, multiplier: float) -> core.World:
    """The world of a long-timer run: the counterpart and the ordinary domain are the running service."""
    from .runner import _client_tls, _profile_trust

    try:
        layout, index, cas, crls = _profile_trust(profile, pki_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ProfileError(str(exc)) from None
    store = StateStore(state_dir)
    creds = layout.providers[0]
    return core.World(
        profile=profile, counterpart=RemoteCounterpart(store, creds, index), ordinary=RemoteOrdinary(store),
        counterpart_users=[f"utente{i}@{creds.domains[0]}" for i in (1, 2, 3)],
        ordinary_users=[f"utente{i}@{profile.ordinary_domain}" for i in (1, 2)],
        validation=ValidationContext(index=index, ca_certificates=cas, crls=crls), evidence=EvidenceStore(out),
        client_tls=_client_tls(profile.ca_file), multiplier=multiplier, counterpart_credentials=creds)


def _finding_dict(f: Finding) -> dict:
    return {**f.to_dict(), "evidence": getattr(f, "evidence", None)}


def _finding(d: dict) -> Finding:
    f = Finding(tuple(d["requirements"]), Verdict(d["verdict"]), d["message"], d.get("expected"), d.get("actual"),
                d.get("decision"), check=d.get("check", ""), level=d.get("level", ""))
    f.evidence = d.get("evidence")  # type: ignore[attr-defined]
    return f


# ------------------------------------------------------------------------------------------ start, resume


def start(profile_path: Path, pki_dir: Path, state_dir: Path, out: Path, multiplier: float,
          ids: list[str] | None = None) -> dict:
    """Start the long-timer scenarios: submit, check the acceptance and the envelope, record what is awaited."""
    from .scenarios.timeouts import _address, _dispatch

    profile = load_profile(profile_path)
    world = remote_world(profile, pki_dir, state_dir, out, multiplier)
    chosen = [LONG_SCENARIOS[i] for i in (ids or list(LONG_SCENARIOS))]
    waiting = {"version": 1, "profile": str(Path(profile_path).resolve()), "counterpart_pki": str(pki_dir.resolve()),
               "counterpart_state": str(state_dir.resolve()), "multiplier": multiplier, "started": time.time(),
               "scenarios": []}
    for s in chosen:
        record: dict = {}

        def begin(ctx: core.ScenarioContext, s=s, record=record) -> None:
            rcpt = _address(ctx, s.behaviour.split("-")[0])
            ctx.world.counterpart.set_behaviour(s.behaviour, recipients=[rcpt])
            run = _dispatch(ctx, [rcpt], [rcpt])
            if run is None:
                return
            offset = time.time() - time.monotonic()  # this process's clocks: the record holds wall-clock instants
            ident = run.envelope.message.daticert.identificativo if run.envelope and run.envelope.message.daticert \
                else None
            record.update(token=ctx.token, rcpt=rcpt, early=run.early + offset, late=run.late + offset,
                          preavviso=run.preavviso, window=run.window, timeout=run.timeout, identificativo=ident,
                          tol=max(run.tol, DATE_RESOLUTION * multiplier))

        result = core.run_scenario(world, _spec(s, begin), [])
        entry = {"id": s.id, "findings": [_finding_dict(f) for f in result.findings], "events": result.events,
                 "evidence": result.evidence, "started": result.started, "duration": result.duration,
                 "error": result.error, "record": record or None}
        if record:
            slack = max(2.0, 0.02 * record["timeout"]) * multiplier
            entry["due"] = record["late"] + record["timeout"] + slack
            entry["awaiting"] = (f"the target's 12 h / 24 h notices for {record['rcpt']} in "
                                 f"{profile.mailboxes[0].address}'s mailbox")
        waiting["scenarios"].append(entry)
    waiting["due"] = max((e.get("due", 0.0) for e in waiting["scenarios"]), default=time.time())
    (out / WAITING).write_text(json.dumps(waiting, indent=1), encoding="utf-8")
    return waiting


class NotDue(Exception):
    """`resume` was called before the awaited notices are due."""


def resume(run_dir: Path, *, wait: bool = False) -> tuple[list[core.ScenarioResult], TargetProfile, dict]:
    """Collect what arrived, judge it, return the results (the start phase's findings included)."""
    try:
        waiting = json.loads((run_dir / WAITING).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{run_dir}: no long-timer run to resume ({exc})") from None
    left = waiting["due"] - time.time()
    if left > 0:
        if not wait:
            raise NotDue(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(waiting["due"])))
        time.sleep(left)  # bounded: until the latest notice is due, never longer
    profile = load_profile(Path(waiting["profile"]))
    world = remote_world(profile, Path(waiting["counterpart_pki"]), Path(waiting["counterpart_state"]), run_dir,
                         float(waiting["multiplier"]))
    results = []
    for entry in waiting["scenarios"]:
        s = LONG_SCENARIOS[entry["id"]]
        # Evidence numbering goes on after what the start phase wrote.
        folder = world.evidence.root / entry["id"]
        world.evidence._counters[entry["id"]] = len(list(folder.iterdir())) if folder.is_dir() else 0
        before = [_finding(d) for d in entry["findings"]]
        rec = entry.get("record")
        if rec is None:  # nothing was dispatched: the start phase's findings say why
            findings, events, evidence = before, entry["events"], entry["evidence"]
        else:
            def finish(ctx: core.ScenarioContext, s=s, rec=rec) -> None:
                from .scenarios.timeouts import TIMEOUTS

                ctx.token = rec["token"]
                s.judge(ctx, rec, ctx.mailbox(0, TIMEOUTS))

            done = core.run_scenario(world, _spec(s, finish), [])
            findings = before + done.findings
            events, evidence = entry["events"] + done.events, entry["evidence"] + done.evidence
        verdict = core.worst(str(f.verdict) for f in findings) if findings else "ERROR"
        results.append(core.ScenarioResult(_spec(s, lambda ctx: None), verdict, findings, events, evidence,
                                           entry["started"], time.time() - entry["started"], entry.get("error")))
    waiting["judged"] = time.time()
    (run_dir / WAITING).write_text(json.dumps(waiting, indent=1), encoding="utf-8")
    return results, profile, waiting

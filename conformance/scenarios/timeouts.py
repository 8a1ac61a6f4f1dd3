"""Sender-side timeouts (TMO-02..10, TMO-13, MUL-09/10; decisions D3, D11, D25-D27): a target's user sends
to counterpart mailboxes that never answer, answer only with a presa in carico, or answer late; the target
sends its user the 12 h notice after `preavviso` and the 24 h notice inside [window_start, timeout], one
each per PEC recipient that needs it, and nothing for a recipient whose receipts came in time.

Times are the target's own timers (profile [timers], seconds) on the suite's monotonic clock. A notice
can look late because of polling and queueing (tolerance: 0.5 s times the run's multiplier); it can look
early only if the dispatch is placed too late, so the dispatch is taken as the earlier of the submission
and the acceptance time the target declares (TMO-11), and the early side gets half the tolerance. The
submission starts just after a whole second, so a target counting from its acceptance time truncated to
the second (the Date resolution) and the suite agree on the dispatch to a few milliseconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from ..counterpart import forge
from ..engine.core import Blocked, Captured, HarnessError, ScenarioContext, scenario
from ..pec.constants import Kind

TOLERANCE = 0.5
TIMEOUTS = (Kind.PREAVVISO_12H, Kind.MANCATA_CONSEGNA_24H)
_CODE = re.compile(r"^\s*(\d\.\d{1,3}\.\d{1,3})\b")


@dataclass
class _Run:
    """One submission and the instants the timers count from."""

    early: float  # monotonic: the earliest plausible dispatch (submission start or declared acceptance)
    late: float  # monotonic: the submission's final reply (the dispatch cannot be later)
    preavviso: float
    window: float
    timeout: float
    tol: float
    envelope: Captured | None

    @property
    def tol_early(self) -> float:
        return self.tol / 2

    def since(self, cap: Captured) -> float:
        return cap.at - self.early


def _address(ctx: ScenarioContext, label: str) -> str:
    """A counterpart mailbox unique to this scenario, so its behaviour touches no other scenario."""
    return f"{label}-{ctx.token}@{ctx.peer(0).rpartition('@')[2]}"


def _dispatch(ctx: ScenarioContext, rcpts: list[str], pec: list[str]) -> _Run | None:
    """Submit to `rcpts` (asking for concise receipts); wait for the acceptance and the envelope."""
    raw = ctx.original(rcpts, tipo="sintetica")
    time.sleep(1.02 - time.time() % 1.0)  # just past a whole second: a declared time to the second is then exact
    wall, t0 = time.time(), time.monotonic()
    out = ctx.submit(raw, rcpts)
    t1 = time.monotonic()
    if not out.accepted:  # a correct submission refused is ACC-17's failure, judged in acceptance.single
        raise Blocked(None, f"the submission was not accepted ({out})")
    acc = ctx.wait_mailbox(0, Kind.ACCETTAZIONE, within=10)
    early = t0
    if acc:
        try:
            declared = parsedate_to_datetime(acc[0].message.header("date")).timestamp()
            early = max(min(t0, t0 + declared - wall), t0 - 2.0)  # 1 s resolution, 1 s clock skew (TIM-06)
        except (TypeError, ValueError, IndexError):
            pass
    envelopes = ctx.wait_counterpart(Kind.BUSTA_TRASPORTO, within=10)
    got = {r.lower() for rec in ctx.counterpart_got(Kind.BUSTA_TRASPORTO) for r in rec.rcpts}
    ctx.verdict("MUL-02", got == set(pec), "the envelope reaches the PEC recipients", expected=", ".join(pec),
                actual=", ".join(sorted(got)) or "none")
    return _Run(early, t1, ctx.timer("preavviso", 43200.0), ctx.timer("window_start", 79200.0),
                ctx.timer("timeout", 86400.0), ctx.seconds(TOLERANCE), envelopes[0] if envelopes else None)


def _watch(ctx: ScenarioContext, run: _Run, until: float, done=None) -> list[Captured]:
    """The scenario's timeout notices in the sender's mailbox, watched until `until` seconds (plus the
    tolerance) after the submission, or until `done(notices)`."""
    end = run.late + until + run.tol
    while True:
        caps = ctx.mailbox(0, TIMEOUTS)
        if (done is not None and done(caps)) or time.monotonic() >= end:
            return caps
        time.sleep(0.05)


def _of(caps: list[Captured], kind: Kind, rcpt: str) -> list[Captured]:
    return [c for c in caps if c.message.kind is kind and c.message.daticert is not None
            and (c.message.daticert.consegna or "").lower() == rcpt]


def _code(cap: Captured) -> str | None:
    m = _CODE.match(cap.message.daticert.errore_esteso or "") if cap.message.daticert else None
    return m.group(1) if m else None


def _both_notices(ctx: ScenarioContext, run: _Run, caps: list[Captured], rcpt: str, reqs=("TMO-06",)) -> None:
    """Neither presa in carico nor consegna for `rcpt`: one 12 h and one 24 h notice, on time."""
    n12, n24 = _of(caps, Kind.PREAVVISO_12H, rcpt), _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt)
    ctx.verdict(("TMO-02", *reqs), len(n12) == 1, f"one 12 h notice for {rcpt} reaches the sender",
                expected="1", actual=str(len(n12)), decision="D26")
    if n12:
        t = run.since(n12[0])
        ctx.verdict("TMO-02", t >= run.preavviso - run.tol_early, "the 12 h notice comes after preavviso, not before",
                    expected=f">= {run.preavviso:g} s", actual=f"{t:.2f} s after dispatch")
        ctx.verdict("NOT-04", _code(n12[0]) != "5.4.1", "the 12 h notice does not use the 24 h code 5.4.1",
                    soft=True, decision="D18", actual=n12[0].message.daticert.errore_esteso)
    ctx.verdict(("TMO-03", *reqs), bool(n24), f"a 24 h notice for {rcpt} reaches the sender",
                expected="1", actual=str(len(n24)), decision="D26")
    if n24:
        _window(ctx, run, n24)
        ctx.verdict("NOT-04", _code(n24[0]) == "5.4.1", "the 24 h notice carries the code 5.4.1", soft=True,
                    decision="D18", expected="5.4.1 - <gestore> - ...", actual=n24[0].message.daticert.errore_esteso)


def _window(ctx: ScenarioContext, run: _Run, n24: list[Captured]) -> None:
    """The 24 h notice: inside [window_start, timeout] and sent once (the tracking then stops)."""
    t, latest = run.since(n24[0]), n24[0].at - run.late
    ctx.verdict("TMO-03", t >= run.window - run.tol_early and latest <= run.timeout + run.tol,
                "the 24 h notice comes inside the 22-24 h window", decision="D27",
                expected=f"[{run.window:g}, {run.timeout:g}] s", actual=f"{t:.2f} s after dispatch")
    ctx.verdict(("TMO-03", "TMO-08"), len(n24) == 1, "the 24 h notice is sent once", expected="1",
                actual=str(len(n24)))


def _addressed(ctx: ScenarioContext, caps: list[Captured], pec: list[str]) -> None:
    """Every notice to the sender (D3), naming one PEC recipient in consegna and in the text (D26)."""
    stray = [c for k in TIMEOUTS for c in ctx.wait_counterpart(k, count=0, within=0)]
    stray += [c for c in ctx.wait_ordinary(count=0, within=0) if c.message.kind in TIMEOUTS]
    if not caps and not stray:  # no timeout notice anywhere: where they go cannot be seen
        ctx.blocked(("TMO-09", "MUL-10"), "the target sent no timeout notice")
        return
    ctx.verdict(("TMO-09", "GEN-01"), not stray, "timeout notices go to the sender only, never to a recipient",
                decision="D3", expected="none elsewhere", actual=f"{len(stray)} sent to recipients' providers")
    bad = [c for c in caps if not c.message.daticert or (c.message.daticert.consegna or "").lower() not in pec
           or (c.message.daticert.consegna or "").lower() not in (c.message.text_plain or c.message.text_html or "").lower()]
    ctx.verdict("MUL-10", not bad, "every timeout notice names its PEC recipient in consegna and in the text",
                decision="D26", expected=" | ".join(pec),
                actual=", ".join(str(c.message.daticert.consegna if c.message.daticert else None) for c in bad)
                or "all named")


def _answer(ctx: ScenarioContext, run: _Run, rcpt: str, *, presa: bool, consegna: bool) -> None:
    """Answer for `rcpt` as the counterpart's normal behaviour would (a scenario-made answer: the built-in
    counterpart answers only its listed users with a consegna)."""
    if run.envelope is None:
        raise HarnessError("no envelope to answer")
    cp = ctx.world.counterpart
    rec = ctx.counterpart_got(Kind.BUSTA_TRASPORTO)[0]
    env = run.envelope.message
    creds = ctx.world.counterpart_credentials
    if presa:
        box = None
        if rec.origin is not None and rec.origin.certificate_der is not None:
            box = cp.index.receipt_mailbox_for(rec.origin.certificate_der, env.daticert.mittente.rpartition("@")[2])
        box = box or ctx.world.profile.receipt_mailbox
        code = ctx.inject(forge.presa_in_carico(creds, env, box, [rcpt]), [box], mail_from=cp.service_address,
                          label="presa-in-carico")
        if not 200 <= code < 300:
            _refused_notice(ctx, "presa in carico", code)
    if consegna:
        code = ctx.inject(forge.consegna(creds, env, rcpt), [env.daticert.mittente], mail_from=cp.service_address,
                          label="consegna")
        if not 200 <= code < 300:
            _refused_notice(ctx, "consegna", code)


def _refused_notice(ctx: ScenarioContext, what: str, code: int) -> None:
    """The target's incoming point refused a correct notice of the counterpart: its failure, and what was to
    follow from the notice cannot be seen."""
    ctx.verdict("RIC-13", False, f"the incoming point accepts the counterpart's correct {what}", expected="250",
                actual=str(code))
    raise Blocked(None, f"the target refused the counterpart's {what} (SMTP {code})")


@scenario("timeouts.silent", "No answer at all: the 12 h and the 24 h notices",
          "A user sends to a counterpart mailbox that never answers; the target sends the sender a 12 h notice "
          "after preavviso and a 24 h notice inside the 22-24 h window, one each, naming the recipient.",
          ["TMO-02", "TMO-03", "TMO-06", "TMO-08", "TMO-09", "TMO-10", "GEN-01", "MUL-10", "NOT-04"],
          needs=("timers",), timers=True)
def silent(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "silent")
    ctx.world.counterpart.set_behaviour("silent", recipients=[rcpt])
    run = _dispatch(ctx, [rcpt], [rcpt])
    if run is None:
        return
    caps = _watch(ctx, run, run.timeout)
    _both_notices(ctx, run, caps, rcpt)
    _addressed(ctx, caps, [rcpt])
    if not _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt) or run.envelope is None:
        ctx.blocked("TMO-08", "no 24 h notice: no late consegna to send after it")
        return
    # The tracking has ended; a consegna that comes now is still a valid notice for the sender.
    _answer(ctx, run, rcpt, presa=False, consegna=True)
    late = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA, within=10)
    ctx.verdict("TMO-08", len(late) == 1, "a consegna after the 24 h notice is delivered to the sender",
                expected="1 consegna", actual=str(len(late)))


@scenario("timeouts.presa-only", "Presa in carico, no consegna: only the 24 h notice",
          "The counterpart takes the envelope in charge and never delivers; the presa in carico arrives within "
          "12 h, so the target sends no 12 h notice, only the 24 h one inside the window.",
          ["TMO-04", "TMO-03", "TMO-08", "TMO-13", "TMO-09", "GEN-01", "NOT-04"], needs=("timers",), timers=True)
def presa_only(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "presa")
    ctx.world.counterpart.set_behaviour("presa-only", recipients=[rcpt])
    run = _dispatch(ctx, [rcpt], [rcpt])
    if run is None or run.envelope is None:
        return
    caps = _watch(ctx, run, run.timeout)
    ident = run.envelope.message.daticert.identificativo if run.envelope.message.daticert else None
    sent = ctx.world.counterpart.sent_matching(lambda s: s.kind == str(Kind.PRESA_IN_CARICO) and s.related == ident)
    if not sent:
        raise HarnessError("the counterpart sent no presa in carico")
    if not sent[0].outcome.ok:
        _refused_notice(ctx, "presa in carico", sent[0].outcome.code)
    presa = sent[0].at - (time.time() - time.monotonic()) - run.early  # when it was through, after dispatch
    n12, n24 = _of(caps, Kind.PREAVVISO_12H, rcpt), _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt)
    if presa <= run.preavviso - run.tol and not n12 and not n24:
        ctx.blocked("TMO-04", "no timeout notice at all: the missing 12 h notice proves nothing")
    elif presa <= run.preavviso - run.tol:
        ctx.verdict("TMO-04", not n12, "no 12 h notice: the presa in carico came within 12 h",
                    expected="none", actual=f"{len(n12)} notice(s); presa in carico {presa:.2f} s after dispatch")
    elif presa >= run.preavviso + run.tol + (run.late - run.early):
        ctx.verdict("TMO-13", len(n12) == 1, "the presa in carico came after 12 h: a 12 h notice is due",
                    expected="1", actual=f"{len(n12)}; presa in carico {presa:.2f} s after dispatch")
    else:
        ctx.info("TMO-04", f"the presa in carico came about 12 h after dispatch ({presa:.2f} s): "
                           f"{len(n12)} 12 h notice(s), either is accepted")
    ctx.verdict(("TMO-04", "TMO-03"), bool(n24), "a 24 h notice: a presa in carico does not stop it",
                expected="1", actual=str(len(n24)))
    if n24:
        _window(ctx, run, n24)
        ctx.verdict("NOT-04", _code(n24[0]) == "5.4.1", "the 24 h notice carries the code 5.4.1", soft=True,
                    decision="D18", expected="5.4.1 - <gestore> - ...", actual=n24[0].message.daticert.errore_esteso)
    _addressed(ctx, caps, [rcpt])


@scenario("timeouts.two-recipients", "Timers run per recipient",
          "Two counterpart recipients: one is taken in charge and delivered at once, the other never answers; "
          "the target sends the 12 h and 24 h notices for the silent one only (decision D26).",
          ["MUL-10", "TMO-07", "TMO-06", "TMO-02", "TMO-03", "TMO-09", "GEN-01"], needs=("timers",), timers=True)
def two_recipients(ctx: ScenarioContext) -> None:
    answered, silent_one = _address(ctx, "answered"), _address(ctx, "silent")
    ctx.world.counterpart.set_behaviour("silent", recipients=[answered, silent_one])
    run = _dispatch(ctx, [answered, silent_one], [answered, silent_one])
    if run is None or run.envelope is None:
        return
    _answer(ctx, run, answered, presa=True, consegna=True)
    receipt = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA, within=10)
    ctx.verdict("RIC-13", len(receipt) == 1, "the consegna for the answered recipient reaches the sender",
                expected="1", actual=str(len(receipt)))
    caps = _watch(ctx, run, run.timeout)
    wrong = _of(caps, Kind.PREAVVISO_12H, answered) + _of(caps, Kind.MANCATA_CONSEGNA_24H, answered)
    if _of(caps, Kind.PREAVVISO_12H, silent_one) and receipt:
        # The silent recipient's 12 h notice shows the timers work: their silence for the other one counts.
        ctx.verdict(("MUL-10", "TMO-07"), not wrong, f"no timeout notice for {answered}, answered in time",
                    decision="D26", expected="none", actual=f"{len(wrong)} notice(s)")
    elif wrong:
        ctx.verdict(("MUL-10", "TMO-07"), False, f"no timeout notice for {answered}, answered in time",
                    decision="D26", expected="none", actual=f"{len(wrong)} notice(s)")
    else:
        ctx.blocked("TMO-07", "no 12 h notice for the silent recipient either (or the consegna was not "
                              "delivered): the quiet timers of the answered one prove nothing")
    _both_notices(ctx, run, caps, silent_one, reqs=("MUL-10", "TMO-06"))
    _addressed(ctx, caps, [answered, silent_one])


@scenario("timeouts.late-consegna", "Consegna after 12 h, before 22 h: only the 12 h notice",
          "The counterpart never takes the envelope in charge and delivers it between the 12 h and the 22 h "
          "marks; the target sends the 12 h notice, delivers the late consegna, and sends no 24 h notice.",
          ["TMO-05", "TMO-02", "TMO-03", "RIC-13", "TMO-09", "GEN-01"], needs=("timers",), timers=True)
def late_consegna(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "late")
    ctx.world.counterpart.set_behaviour("silent", recipients=[rcpt])
    run = _dispatch(ctx, [rcpt], [rcpt])
    if run is None or run.envelope is None:
        return
    at = run.preavviso + 0.7 * (run.window - run.preavviso)  # after dispatch: past 12 h, well before 22 h
    first = _watch(ctx, run, at - run.tol - (run.late - run.early),
                   done=lambda caps: bool(_of(caps, Kind.PREAVVISO_12H, rcpt)))
    time.sleep(max(0.0, run.early + at - time.monotonic()))
    sent = time.monotonic()
    _answer(ctx, run, rcpt, presa=False, consegna=True)
    receipt = ctx.wait_mailbox(0, Kind.CONSEGNA_SINTETICA, within=10)
    ctx.verdict(("RIC-13", "TMO-08"), len(receipt) == 1, "the late consegna is delivered to the sender",
                expected="1", actual=str(len(receipt)))
    caps = _watch(ctx, run, run.timeout)
    n12, n24 = _of(caps, Kind.PREAVVISO_12H, rcpt), _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt)
    if n12 or sent - run.late >= run.preavviso + run.tol:
        ctx.verdict(("TMO-05", "TMO-02"), len(n12) == 1 and n12[0] in first,
                    "one 12 h notice, before the late consegna", expected="1",
                    actual=f"{len(n12)} ({len(first)} before the consegna)")
    else:
        ctx.info("TMO-05", f"no 12 h notice; the consegna came {sent - run.late:.2f} s after the submission, "
                           "maybe within 12 h of the dispatch as the target counts it")
    if n12 or n24:  # the target's timers run (a 12 h notice came): the missing 24 h one is the consegna's doing
        ctx.verdict(("TMO-05", "TMO-03"), not n24, "no 24 h notice: the consegna came before 22 h", decision="D27",
                    expected="none", actual=", ".join(f"{run.since(c):.2f} s" for c in n24) or "none")
    else:
        ctx.blocked(("TMO-05", "TMO-03"), "no timeout notice at all: the missing 24 h notice proves nothing")
    _addressed(ctx, caps, [rcpt])


@scenario("timeouts.ordinary-recipient", "No timeout notice for an ordinary recipient",
          "A user sends to a silent counterpart mailbox and an ordinary (esterno) address; the PEC recipient "
          "gets both timeout notices, the ordinary one none (decision D11: a notice for it is a warning).",
          ["MUL-09", "TMO-06", "TMO-02", "TMO-03", "MUL-10"], needs=("timers",), timers=True)
def ordinary_recipient(ctx: ScenarioContext) -> None:
    rcpt = _address(ctx, "silent")
    outsider = f"esterno-{ctx.token}@{ctx.outsider(0).rpartition('@')[2]}"
    ctx.world.counterpart.set_behaviour("silent", recipients=[rcpt])
    run = _dispatch(ctx, [rcpt, outsider], [rcpt])
    if run is None:
        return
    caps = _watch(ctx, run, run.timeout)
    _both_notices(ctx, run, caps, rcpt)
    extra = [c for c in caps if c.message.daticert and (c.message.daticert.consegna or "").lower() == outsider]
    if extra or _of(caps, Kind.PREAVVISO_12H, rcpt) or _of(caps, Kind.MANCATA_CONSEGNA_24H, rcpt):
        ctx.verdict("MUL-09", not extra, "no timeout notice for the ordinary (esterno) recipient", soft=True,
                    decision="D11", expected="none", actual=f"{len(extra)} notice(s)")
    _addressed(ctx, caps, [rcpt, outsider])

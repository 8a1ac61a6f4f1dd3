"""The scenario engine: scenarios, their vocabulary (send, wait with a deadline, judge), verdicts.

A scenario reads like the story it tests; the waiting, the matching of receipts to the message
that caused them, the evidence and the validator live here. Every wait has a deadline taken from
the target's timers times `--timeout-multiplier` (the WAITING state); a harness or network problem
is an ERROR, never a FAIL blamed on the target.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import smtplib
import ssl
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import redact
from ..catalogue import load_catalogue
from ..checks.findings import Finding, ValidationContext, Verdict
from ..checks.validator import check
from ..net.mailbox import MailboxError, MaildirReader, open_mailbox
from ..net.smtp import BoundedSMTP, BoundedSMTP_SSL
from ..pec.constants import Kind
from ..pec.mime import fold
from ..pec.parse import ParsedMessage, parse_message
from ..pec.samples import sample_original
from .evidence import EvidenceStore
from .profile import TargetProfile

SEVERITY = ["FAIL", "ERROR", "XPASS", "WARN", "XFAIL", "BLOCKED", "PASS", "REVIEW", "INFO", "SKIP"]


def worst(verdicts: Iterable[str]) -> str:
    present = set(verdicts)
    for v in SEVERITY:
        if v in present:
            return v
    return "SKIP"


class HarnessError(Exception):
    """The suite could not do its part (network, mailbox, setup): an ERROR, not the target's fault."""


class Skip(Exception):
    """The target does not declare what the scenario needs."""


class Blocked(Exception):
    """A precondition failed, so the requirements were not exercised (BLOCKED, never PASS or FAIL).

    Raised by a scenario (or by the engine on its behalf, e.g. when preflight found the submission path
    broken). The engine records a BLOCKED finding, naming the precondition, for each requirement of
    `requirements` (default: all the scenario's) that no finding has judged yet.
    """

    def __init__(self, requirements: Iterable[str] | str | None, precondition: str):
        super().__init__(precondition)
        reqs = (requirements,) if isinstance(requirements, str) else requirements
        self.requirements: tuple[str, ...] | None = None if reqs is None else tuple(reqs)
        self.precondition = precondition


class Interrupted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM, the overall deadline): the scenario is not finished."""


class TargetFailure(Exception):
    """The target broke a requirement in a way that stops the scenario (e.g. no STARTTLS to submit over)."""

    def __init__(self, requirements: tuple[str, ...], message: str, expected: str | None = None,
                 actual: str | None = None):
        super().__init__(message)
        self.requirements, self.expected, self.actual = requirements, expected, actual


# ------------------------------------------------------------------------------------------------
# Scenario registry


@dataclass(frozen=True)
class Scenario:
    id: str
    family: str
    title: str
    story: str
    requirements: tuple[str, ...]
    func: Callable[[ScenarioContext], None]
    needs: tuple[str, ...] = ()
    timers: bool = False


SCENARIOS: dict[str, Scenario] = {}


def scenario(id: str, title: str, story: str, requirements: Iterable[str], *, needs: Iterable[str] = (),
             timers: bool = False):
    def wrap(func):
        if id in SCENARIOS:
            raise ValueError(f"scenario {id} defined twice")
        SCENARIOS[id] = Scenario(id, id.split(".")[0], title, story, tuple(requirements), func, tuple(needs), timers)
        return func
    return wrap


def select(patterns: list[str] | None, excludes: list[str] | None) -> list[Scenario]:
    chosen = [s for s in SCENARIOS.values()
              if not patterns or any(fnmatch.fnmatch(s.id, p) for p in patterns)]
    return [s for s in chosen if not any(fnmatch.fnmatch(s.id, p) for p in excludes or [])]


# ------------------------------------------------------------------------------------------------
# Expectations (expected verdicts with a reason)


@dataclass(frozen=True)
class Expectation:
    scenario: str
    requirement: str | None
    verdict: str
    reason: str

    def matches(self, scenario_id: str, requirements: Iterable[str]) -> bool:
        return fnmatch.fnmatch(scenario_id, self.scenario) and (
            self.requirement is None or self.requirement in requirements)


def load_expectations(path: Path) -> list[Expectation]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    out = []
    for i, item in enumerate(data.get("expected", [])):
        if item.get("verdict") not in ("FAIL", "WARN", "ERROR", "SKIP") or not item.get("reason") \
                or not item.get("scenario"):
            raise ValueError(f"{path}: expected[{i}] needs scenario, verdict (FAIL/WARN/ERROR/SKIP) and reason")
        out.append(Expectation(item["scenario"], item.get("requirement"), item["verdict"], item["reason"]))
    return out


# ------------------------------------------------------------------------------------------------
# What the engine knows about the world


@dataclass
class World:
    """Everything a scenario may touch: the target profile, the counterpart, the ordinary domain, the
    trust material to validate with, the evidence store, and the run's settings."""

    def __post_init__(self) -> None:
        # Whatever the target sends back is scrubbed of its users' passwords before it is written anywhere.
        redact.register_all((m.secret(), user) for m in self.profile.mailboxes for user in {m.address, m.login})

    profile: TargetProfile
    counterpart: object  # conformance.counterpart.peer.Counterpart
    ordinary: object  # conformance.counterpart.sink.OrdinaryDomain
    counterpart_users: list[str]
    ordinary_users: list[str]
    validation: ValidationContext
    evidence: EvidenceStore
    client_tls: ssl.SSLContext
    multiplier: float = 1.0
    forgery: dict = field(default_factory=dict)  # name -> (key, cert) for forged signatures
    counterpart_credentials: object = None
    # Publish a new providers index where the target loads it from (only when the suite controls that).
    republish_index: Callable[[list], None] | None = None
    # Put a certificate on the CRL the target loads (only when the suite controls that: RIC-07).
    revoke_certificate: Callable[[object], None] | None = None
    # What preflight found broken: a scenario touching it is BLOCKED with this precondition text.
    gates: Gates = field(default_factory=lambda: Gates())
    # Set when the run is stopped: every wait ends at once and the scenario is marked not run.
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    # Messages the suite made (body_key -> who): a copy of one in a mailbox is not the target's work.
    made: dict[str, str] = field(default_factory=dict)
    made_scanned: int = 0  # how much of counterpart.sent is in `made`
    control_blamed: dict[tuple[str, ...], str] = field(default_factory=dict)  # requirements -> first scenario


@dataclass
class Gates:
    """Preconditions preflight found failed. Each value is the text a BLOCKED finding shows."""

    submit: str | None = None  # the submission path as a whole (endpoint, STARTTLS, a clean message)
    submit_user: dict[int, str] = field(default_factory=dict)  # AUTH failed for this mailbox
    mailbox: dict[int, str] = field(default_factory=dict)  # this mailbox could not be opened
    incoming: str | None = None  # the incoming point does not answer


@dataclass
class Captured:
    raw: bytes
    message: ParsedMessage
    evidence: str
    source: str  # "mailbox:<address>" or "counterpart" or "ordinary"
    at: float
    made_by: str | None = None  # who made it when not the target (it only relayed it): then not judged


_LEVELS: dict[str, str] = {}
_MADE_LOCK = threading.Lock()


def info_level(requirement: str) -> bool:
    """INFO-level requirements are observations: they never get PASS, FAIL or WARN."""
    if not _LEVELS:
        _LEVELS.update({r.id: r.level for r in load_catalogue()})
    return _LEVELS.get(requirement) == "INFO"


def split_info(f: Finding) -> list[Finding]:
    """A judgement citing INFO-level requirements becomes, for those, an INFO finding ("observed: ...")."""
    if str(f.verdict) not in ("PASS", "FAIL", "WARN"):
        return [f]
    info = tuple(r for r in f.requirements if info_level(r))
    if not info:
        return [f]
    out = []
    rest = tuple(r for r in f.requirements if r not in info)
    obs = Finding(info, Verdict.INFO, f"observed: {f.message}", f.expected, f.actual, f.decision, check=f.check)
    obs.evidence = getattr(f, "evidence", None)  # type: ignore[attr-defined]
    out.append(obs)
    if rest:
        f.requirements = rest
        out.insert(0, f)
    return out


def body_key(raw: bytes) -> str:
    """What identifies a message whoever relays it: its body (a relay adds header fields, never body bytes);
    the whole message bar line ends when the body is too short to tell messages apart."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    body = body.replace(b"\r\n", b"\n").rstrip()
    data = body if len(body) >= 64 else raw.replace(b"\r\n", b"\n").rstrip()
    return hashlib.sha256(data).hexdigest()


@dataclass
class SubmitOutcome:
    code: int
    text: str
    evidence: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def auth_failure(self) -> bool:
        """Authentication required / failed / temporarily unavailable: nothing about the message was judged."""
        return self.code in AUTH_CODES

    def __str__(self) -> str:
        return f"SMTP {self.code} {self.text}".strip()[:300]


# Replies that concern the login, not the message (RFC 4954: 530 required, 535 failed, 454 temporary).
AUTH_CODES = frozenset({530, 534, 535, 538, 454})

# Words by which an SMTP reply names why it refused. A refusal counts for a rule only when its reply
# names no cause, or the cause the rule is about: "554 unhandled charset" is not a virus check.
REFUSAL_CAUSES: dict[str, tuple[str, ...]] = {
    "auth": ("auth", "login", "credential", "password", "not authenticated"),
    "charset": ("charset", "encoding", "8bit", "utf-8", "iso-8859"),
    "size": ("size", "too large", "too big", "exceeds", "quota", "limit"),
    "virus": ("virus", "infect", "malware", "eicar", "antivirus"),
    "sender": ("sender", "mail from", "from:", "reverse", "spoof", "not owned", "not yours", "mismatch"),
    "recipient": ("recipient", "rcpt", "bcc", "to:", "cc:", "unknown user", "no such user", "mailbox"),
    "format": ("header", "syntax", "malformed", "invalid", "format", "missing"),
    "policy": ("spam", "blocked", "blacklist", "rate", "too many", "policy", "relay"),
    "temporary": ("try later", "try again", "temporar", "deferred", "greylist"),
    "tls": ("starttls", "tls", "encryption", "ssl"),
}


def named_causes(text: str) -> set[str]:
    """The causes an SMTP reply's text names (keys of REFUSAL_CAUSES)."""
    low = text.lower()
    return {cause for cause, words in REFUSAL_CAUSES.items() if any(w in low for w in words)}


@dataclass
class Control:
    """A positive control: the same message without the defect, from the same mailbox, in the same run.

    `accepted` is True only when the target accepted it (SMTP 2xx, and the acceptance receipt arrived
    when one was awaited): only then can a refusal of the defective message be blamed on the defect.
    """

    outcome: SubmitOutcome | None
    accepted: bool
    detail: str
    subject_marker: str = ""

    def __str__(self) -> str:
        return self.detail


class ScenarioContext:
    """The vocabulary scenarios are written in."""

    def __init__(self, world: World, spec: Scenario):
        self.world = world
        self.spec = spec
        self.token = f"t{secrets.token_hex(4)}"
        self.started = time.monotonic()
        self.findings: list[Finding] = []
        self.events: list[dict] = []
        self.evidence_paths: list[str] = []
        self._seen: set[tuple[str, str]] = set()
        self._counter = 0
        self._controls = 0
        self._control_blamed = False
        # Kinds that reach the user as another party made them (e.g. a deliberately odd counterpart receipt):
        # saved as evidence, not judged against the target.
        self.unjudged: set[Kind] = set()

    # -------------------------------------------------------------- time
    def seconds(self, base: float) -> float:
        return base * self.world.multiplier

    def timer(self, name: str, default: float) -> float:
        return float(self.world.profile.timers.get(name, default))

    def deadline(self, seconds: float) -> float:
        return time.monotonic() + self.seconds(seconds)

    def check_cancel(self) -> None:
        if self.world.cancel.is_set():
            raise Interrupted(self.world.cancel_reason or "the run was stopped")

    def pause(self, seconds: float) -> None:
        """Sleep, but end at once (Interrupted) when the run is stopped. Use instead of time.sleep."""
        if self.world.cancel.wait(max(0.0, seconds)):
            raise Interrupted(self.world.cancel_reason or "the run was stopped")

    # -------------------------------------------------------------- recording
    def event(self, frm: str, to: str, label: str, *, kind: str | None = None, message_id: str | None = None,
              evidence: str | None = None) -> None:
        self.events.append({"at": round(time.monotonic() - self.started, 3), "from": frm, "to": to, "label": label,
                            "kind": kind, "message_id": message_id, "evidence": evidence})

    def save(self, direction: str, label: str, raw: bytes) -> str:
        path = self.world.evidence.write(self.spec.id, direction, label, raw)
        self.evidence_paths.append(path)
        return path

    def verdict(self, requirements: str | Iterable[str], ok: bool | None, message: str, *, expected: str | None = None,
                actual: str | None = None, decision: str | None = None, evidence: str | None = None,
                soft: bool = False) -> bool:
        """A scenario-level finding: PASS when ok, else FAIL (WARN when soft); None means INFO."""
        reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)
        if ok is None:
            v = Verdict.INFO
        elif ok:
            v = Verdict.PASS
        else:
            v = Verdict.WARN if soft else Verdict.FAIL
        f = Finding(reqs, v, message, expected, actual, decision, check=f"scenario.{self.spec.id}")
        f.evidence = evidence  # type: ignore[attr-defined]
        self.findings.extend(split_info(f))
        return bool(ok)

    def info(self, requirements, message: str, **kw) -> None:
        self.verdict(requirements, None, message, **kw)

    # -------------------------------------------------------------- not exercised
    def skip(self, requirements: str | Iterable[str], reason: str) -> None:
        """Record the requirements as SKIP (the target does not declare what judging them needs), and go on."""
        reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)
        self.findings.append(Finding(reqs, Verdict.SKIP, reason, check=f"scenario.{self.spec.id}"))

    def has_timers(self) -> bool:
        """The target declares its timers (scaled for a test run): only then may a scenario wait on them."""
        return bool(self.world.profile.capability("timers", False))

    def judged(self) -> set[str]:
        """Requirements this scenario has already given a judgement (anything but INFO/SKIP)."""
        return {r for f in self.findings if str(f.verdict) not in ("INFO", "SKIP") for r in f.requirements}

    def blocked(self, requirements: str | Iterable[str], precondition: str, *, evidence: str | None = None,
                only_unjudged: bool = False) -> None:
        """Record the requirements as BLOCKED: `precondition` failed, so they were not exercised."""
        reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)
        if only_unjudged:
            done = self.judged()
            reqs = tuple(r for r in reqs if r not in done)
        if not reqs:
            return
        f = Finding(reqs, Verdict.BLOCKED, f"not exercised: {precondition}", check=f"scenario.{self.spec.id}")
        f.evidence = evidence  # type: ignore[attr-defined]
        self.findings.append(f)

    def control(self, raw: bytes, rcpts: list[str], *, user: int = 0, mail_from: str | None = None,
                receipt: bool = True, within: float = 20.0, requirements: Iterable[str] = ("ACC-17",),
                label: str = "control") -> Control:
        """Submit the same message without the defect, from the same mailbox (a positive control).

        `raw` is the clean message (build it like the defective one, e.g. with `ctx.original`). Its
        Subject gets a marker so that its receipt is told apart from the defective message's. With
        `receipt` the control counts as accepted only once its acceptance receipt reached mailbox
        `user`. A refused control is a FAIL of `requirements` (a correct message was refused: ACC-17),
        recorded once per run (later ones: BLOCKED, naming the scenario with the FAIL); the caller's
        requirements then get BLOCKED from `judge_refusal`.
        """
        self._controls += 1
        marker = f"[controllo-{self._controls}]"
        raw = _mark_subject(raw, marker)
        out = self.submit(raw, rcpts, user=user, mail_from=mail_from, label=label)
        if not out.accepted:
            detail = f"the same message without the defect was refused ({out})"
            self._control_failed(requirements, detail, out)
            return Control(out, False, detail, marker)
        if receipt:
            got = self.wait_mailbox(user, Kind.ACCETTAZIONE, within=within,
                                    where=lambda c: marker in c.message.subject)
            if not got:
                refused = [c for c in self.mailbox(user, [Kind.NON_ACCETTAZIONE, Kind.NON_ACCETTAZIONE_VIRUS])
                           if marker in c.message.subject]
                detail = (f"the same message without the defect got a non-acceptance notice ({out})" if refused
                          else f"the same message without the defect got {out} but no acceptance receipt "
                               f"within {self.seconds(within):.0f} s")
                self._control_failed(requirements, detail, out)
                return Control(out, False, detail, marker)
        return Control(out, True, f"the same message without the defect was accepted ({out})", marker)

    def _control_failed(self, requirements: Iterable[str], detail: str, out: SubmitOutcome) -> None:
        reqs = tuple(requirements)
        if not reqs or self._control_blamed:
            return
        self._control_blamed = True
        if out.auth_failure:
            # The login failed, not the message: nothing of the target's PEC behaviour was seen.
            self.blocked(reqs, f"{detail}: the login failed", evidence=out.evidence)
            return
        with _MADE_LOCK:  # one FAIL per run for refused correct messages, not one per scenario
            first = self.world.control_blamed.setdefault(reqs, self.spec.id)
        if first != self.spec.id:
            self.blocked(reqs, f"{detail} (the FAIL is recorded once, in {first})", evidence=out.evidence)
            return
        self.verdict(reqs, False, f"a correct submission is not accepted: {detail}", expected="accepted",
                     actual=str(out), evidence=out.evidence)

    def judge_refusal(self, requirements: str | Iterable[str], outcome: SubmitOutcome, control: Control | None, *,
                      notice_kind: Kind | Iterable[Kind] | None = Kind.NON_ACCETTAZIONE, errore: str | None = None,
                      cause: str | Iterable[str] | None = None, user: int = 0, within: float = 15.0,
                      smtp_refusal: str = "PASS", decision: str | None = None, what: str = "") -> str:
        """Judge that the target refused a defective message for the defect, and return the verdict.

        PASS only when the control was accepted and the defective message got either a permanent 5xx
        whose reply names no other cause than `cause` (a key of REFUSAL_CAUSES; with `smtp_refusal=
        "WARN"` such a refusal is a WARN, e.g. decision D30 where a notice is due), or, once accepted,
        a notice of `notice_kind` in mailbox `user` with the `errore` asked for (when given). A failed
        control, an AUTH failure or a reply naming another cause: BLOCKED. A 4xx, or acceptance with no
        notice: FAIL. A notice with the wrong `errore`: FAIL.
        """
        reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)
        label = f"{what}: " if what else ""
        if control is None or not control.accepted:
            self.blocked(reqs, f"{label}no accepted positive control ({control or 'none sent'})",
                         evidence=outcome.evidence)
            return "BLOCKED"
        if not outcome.accepted:
            if outcome.auth_failure:
                self.blocked(reqs, f"{label}the login failed, the message was not judged ({outcome})",
                             evidence=outcome.evidence)
                return "BLOCKED"
            if not outcome.permanent:
                self.verdict(reqs, False, f"{label}deferred instead of refused", expected="a permanent 5xx or a "
                             "non-acceptance notice", actual=str(outcome), decision=decision,
                             evidence=outcome.evidence)
                return "FAIL"
            allowed = {cause} if isinstance(cause, str) else set(cause or ())
            other = named_causes(outcome.text) - allowed
            if other and not (named_causes(outcome.text) & allowed):
                self.blocked(reqs, f"{label}refused for another cause ({', '.join(sorted(other))}): {outcome}",
                             evidence=outcome.evidence)
                return "BLOCKED"
            soft = smtp_refusal.upper() == "WARN"
            self.verdict(reqs, not soft, f"{label}refused with a permanent SMTP error" +
                         (" instead of a notice" if soft else ""), expected="5xx" if not soft else "a notice",
                         actual=str(outcome), decision=decision, evidence=outcome.evidence, soft=soft)
            return "WARN" if soft else "PASS"
        kinds = [] if notice_kind is None else [notice_kind] if isinstance(notice_kind, Kind) else list(notice_kind)
        if not kinds:
            self.verdict(reqs, False, f"{label}accepted; a permanent refusal was due", expected="5xx",
                         actual=str(outcome), decision=decision, evidence=outcome.evidence)
            return "FAIL"
        marker = control.subject_marker
        notices = [c for c in self.wait_mailbox(user, kinds[0], within=within)
                   if not marker or marker not in c.message.subject]
        for k in kinds[1:]:
            notices += [c for c in self.mailbox(user, [k]) if not marker or marker not in c.message.subject]
        if not notices:
            self.verdict(reqs, False, f"{label}accepted and no {' or '.join(map(str, kinds))} notice arrived",
                         expected=" or ".join(map(str, kinds)), actual=f"{outcome}; no notice within "
                         f"{self.seconds(within):.0f} s", decision=decision, evidence=outcome.evidence)
            return "FAIL"
        got = notices[0]
        d = got.message.daticert
        if errore is not None and (d is None or d.errore != errore):
            self.verdict(reqs, False, f"{label}the notice gives the wrong error", expected=f"errore={errore}",
                         actual=f"errore={d.errore if d else 'no daticert'}", decision=decision,
                         evidence=got.evidence)
            return "FAIL"
        self.verdict(reqs, True, f"{label}refused with a {got.message.kind} notice", expected=" or ".join(
            map(str, kinds)), actual=str(got.message.kind) + (f", errore={d.errore}" if d else ""),
            decision=decision, evidence=got.evidence)
        return "PASS"

    # -------------------------------------------------------------- building messages
    def original(self, to: list[str] | str, *, cc: list[str] | str | None = None, tipo: str | None = "completa",
                 subject: str = "Messaggio di prova", attachment: bytes | None = None, sender: str | None = None,
                 extra: list[tuple[str, str]] = (), client_msgid: bool = True) -> bytes:
        """A user's message carrying the scenario token in its subject and Message-ID."""
        self._counter += 1
        sender = sender or self.user(0)
        to_list = [to] if isinstance(to, str) else list(to)
        cc_list = [cc] if isinstance(cc, str) else list(cc or [])
        kwargs = {"attachment": attachment} if attachment is not None else {}
        raw = sample_original(tipo_ricevuta=tipo, subject=f"[{self.token}] {subject}",
                              client_msgid=f"<{self.token}.{self._counter}@suite.test>" if client_msgid else None,
                              **kwargs)
        head, body = raw.split(b"\r\n\r\n", 1)
        lines = [ln for ln in head.split(b"\r\n")
                 if not ln.lower().startswith((b"to:", b"cc:", b"from:"))]
        lines.insert(0, f"From: {sender}".encode())
        lines.insert(1, fold("To", ", ".join(to_list)).rstrip(b"\r\n"))
        if cc_list:
            lines.insert(2, fold("Cc", ", ".join(cc_list)).rstrip(b"\r\n"))
        lines += [fold(n, v).rstrip(b"\r\n") for n, v in extra]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    # -------------------------------------------------------------- parties
    def user(self, index: int) -> str:
        mailboxes = self.world.profile.mailboxes
        if index >= len(mailboxes):
            raise Skip(f"the profile declares {len(mailboxes)} mailboxes; this scenario needs {index + 1}")
        return mailboxes[index].address

    def peer(self, index: int = 0) -> str:
        return self.world.counterpart_users[index]

    def outsider(self, index: int = 0) -> str:
        return self.world.ordinary_users[index]

    # -------------------------------------------------------------- sending
    def submit(self, raw: bytes, rcpts: list[str], *, user: int = 0, mail_from: str | None = None,
               starttls: bool = True, authenticate: bool = True, label: str = "submission") -> SubmitOutcome:
        """Submit through the target's access point as one of its users (STARTTLS and AUTH)."""
        p = self.world.profile
        self.check_cancel()
        if user >= len(p.mailboxes):
            raise Skip(f"the profile declares {len(p.mailboxes)} mailboxes; this scenario needs {user + 1}")
        gates = self.world.gates
        if gates.submit or user in gates.submit_user:
            raise Blocked(None, f"preflight: {gates.submit or gates.submit_user[user]}")
        box = p.mailboxes[user]
        transcript: list[str] = []
        self.made(raw, "the suite (a user's message)")
        path = self.save("out", label, raw)
        self.event(f"user{user}", "target-access", label, message_id=None, evidence=path)
        host, port = p.access
        try:
            cls = BoundedSMTP_SSL if p.access_tls == "implicit" else BoundedSMTP
            kwargs = {"context": self.world.client_tls} if p.access_tls == "implicit" else {}
            with cls(host, port, timeout=max(self.seconds(30), 5.0 + len(raw) / 2_000_000), **kwargs) as smtp:
                transcript.append(f"connect {host}:{port} ({p.access_tls})")
                code, text = smtp.ehlo()
                transcript.append(f"EHLO -> {code}")
                if starttls and p.access_tls != "implicit":
                    if not smtp.has_extn("starttls"):
                        transcript.append("STARTTLS not offered")
                        self.world.evidence.transcript(self.spec.id, label, transcript)
                        raise TargetFailure(("SEC-02", "ACC-02"), "the access point offers no STARTTLS",
                                            expected="STARTTLS in the EHLO answer", actual=text.decode(
                                                "utf-8", "replace")[:200] if isinstance(text, bytes) else str(text))
                    code, text = smtp.starttls(context=self.world.client_tls)
                    transcript.append(f"STARTTLS -> {code}")
                    smtp.ehlo()
                if authenticate:
                    secret = box.secret()
                    if secret is None:
                        raise HarnessError(f"no password for {box.address} (set {box.password_env})")
                    code, text = smtp.login(box.login, secret)
                    transcript.append(f"AUTH -> {code} (password not recorded)")
                refused = smtp.sendmail(mail_from or box.address, rcpts, raw)
                transcript.append(f"MAIL FROM:<{mail_from or box.address}> RCPT {len(rcpts)} DATA -> 250")
                outcome = SubmitOutcome(250, "accepted" if not refused else f"refused: {refused}")
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
            transcript.append(f"-> {exc.smtp_code} {text}")
            outcome = SubmitOutcome(exc.smtp_code, text)
        except smtplib.SMTPRecipientsRefused as exc:
            transcript.append(f"recipients refused: {exc.recipients}")
            code = min(c for c, _ in exc.recipients.values())
            outcome = SubmitOutcome(code, str(exc.recipients))
        except (OSError, smtplib.SMTPException) as exc:
            transcript.append(f"error: {exc!r}")
            self.world.evidence.transcript(self.spec.id, label, transcript)
            raise HarnessError(f"submission to {host}:{port} failed: {exc}") from None
        outcome.evidence = self.world.evidence.transcript(self.spec.id, label, transcript)
        self.evidence_paths.append(outcome.evidence)
        return outcome

    def inject(self, raw: bytes, rcpts: list[str], *, mail_from: str, starttls: bool = True,
               origin: str = "counterpart", label: str = "inbound") -> int:
        """Hand a message to the target's incoming point, as the counterpart or the ordinary domain."""
        self.check_cancel()
        if self.world.gates.incoming:
            raise Blocked(None, f"preflight: {self.world.gates.incoming}")
        path = self.save("out", label, raw)
        self.made(raw, "the counterpart" if origin == "counterpart" else f"the suite ({origin})")
        self.event(origin, "target-incoming", label, evidence=path)
        sender = self.world.counterpart if origin == "counterpart" else self.world.ordinary
        outcome = sender.send(mail_from, rcpts, raw, starttls=starttls, to=self.world.profile.incoming)
        self.evidence_paths.append(self.world.evidence.transcript(self.spec.id, label, outcome.transcript))
        if outcome.code == 0:
            raise HarnessError(f"could not deliver to the target's incoming point: {outcome.text}")
        return outcome.code

    # -------------------------------------------------------------- receiving
    def _related(self, msg: ParsedMessage, raw: bytes) -> bool:
        return self.token.encode() in raw[:20000] or self.token in msg.subject

    def _capture(self, raw: bytes, source: str, label: str, frm: str, to: str, *, expect: Kind | None = None,
                 carried: bytes | None = None, note: str = "", smtp: bool = False) -> Captured:
        """`smtp`: `raw` is exactly what the suite received over SMTP, judged as such (decision D35)."""
        path = self.save("in", label, raw)
        msg = parse_message(raw)
        self.event(frm, to, f"{msg.kind}{note}", kind=str(msg.kind), message_id=msg.header("message-id"),
                   evidence=path)
        if msg.kind in self.unjudged:
            return Captured(raw, msg, path, source, time.monotonic())
        made = self.made_by(raw)
        if made is not None:
            # The target only relayed it: judging it would judge its maker. What the target did to it
            # (e.g. CON-04, delivered unchanged) is the scenario's to judge.
            f = Finding((), Verdict.INFO, f"{msg.kind} made by {made}, relayed by the target: not judged as the "
                        "target's", check=f"scenario.{self.spec.id}")
            f.evidence = path  # type: ignore[attr-defined]
            self.findings.append(f)
            return Captured(raw, msg, path, source, time.monotonic(), made_by=made)
        ctx = ValidationContext(index=self.world.validation.index, ca_certificates=self.world.validation.ca_certificates,
                                crls=self.world.validation.crls, expected_kind=expect, carried_original=carried,
                                captured_from_smtp=smtp)
        for f in check(raw, ctx).findings:
            f.evidence = path  # type: ignore[attr-defined]
            self.findings.extend(split_info(f))
        return Captured(raw, msg, path, source, time.monotonic())

    def made(self, raw: bytes, who: str) -> None:
        """Note that the suite made `raw` (a user's message, the counterpart's or the ordinary domain's)."""
        with _MADE_LOCK:
            self.world.made.setdefault(body_key(raw), who)

    def made_by(self, raw: bytes) -> str | None:
        """Who made `raw`, when the suite did (then the target only relayed it); None when the target did."""
        w = self.world
        with _MADE_LOCK:
            sent = list(getattr(w.counterpart, "sent", None) or [])
            for item in sent[w.made_scanned:]:
                w.made.setdefault(body_key(item.raw), "the counterpart")
            w.made_scanned = len(sent)
            return w.made.get(body_key(raw))

    def _reader(self, index: int):
        if index in self.world.gates.mailbox:
            raise Blocked(None, f"preflight: {self.world.gates.mailbox[index]}")
        box = self.world.profile.mailboxes[index]
        if box.url.startswith("maildir://"):
            return MaildirReader(Path(box.url.removeprefix("maildir://")), box.address)
        return open_mailbox(box.url, box.secret(), ssl_context=self.world.client_tls, timeout=self.seconds(15))

    def mailbox(self, index: int, kinds: Iterable[Kind] | None = None) -> list[Captured]:
        """Messages of this scenario now in a user's mailbox (each new one captured and judged once)."""
        got = []
        wanted = set(kinds) if kinds else None
        try:
            reader = self._reader(index)
            try:
                for fetched in reader.iter_all():
                    key = (f"mbox{index}", fetched.uid)
                    if key in self._seen:
                        continue
                    if self.token.encode() not in fetched.raw[:60000]:
                        continue
                    self._seen.add(key)
                    msg = parse_message(fetched.raw)
                    cap = self._capture(fetched.raw, f"mailbox:{self.user(index)}", str(msg.kind), "target",
                                        f"user{index}", expect=None)
                    self._inbox.setdefault(index, []).append(cap)
            finally:
                reader.close()
        except MailboxError as exc:
            raise HarnessError(f"mailbox {self.user(index)}: {exc}") from None
        for cap in self._inbox.get(index, []):
            if wanted is None or cap.message.kind in wanted:
                got.append(cap)
        return got

    @property
    def _inbox(self) -> dict[int, list[Captured]]:
        if not hasattr(self, "_inbox_store"):
            self._inbox_store: dict[int, list[Captured]] = {}
        return self._inbox_store

    def wait_mailbox(self, index: int, kind: Kind, *, count: int = 1, within: float = 20.0,
                     where: Callable[[Captured], bool] | None = None) -> list[Captured]:
        """WAITING: until `count` messages of `kind` for this scenario are in the mailbox, or the deadline."""
        end = self.deadline(within)
        while True:
            found = [c for c in self.mailbox(index, [kind]) if where is None or where(c)]
            if len(found) >= count or time.monotonic() >= end:
                return found
            self.pause(0.1)

    def quiet_mailbox(self, index: int, kind: Kind, *, during: float) -> list[Captured]:
        """Watch a mailbox for `during` seconds; return the messages of `kind` that arrived (expected none)."""
        end = self.deadline(during)
        while time.monotonic() < end:
            self.pause(min(0.2, max(0.0, end - time.monotonic())))
        return self.mailbox(index, [kind])

    def counterpart_got(self, kind: Kind | None = None, *, where: Callable[[object], bool] | None = None) -> list:
        got = []
        for rec in list(self.world.counterpart.received):
            if not self._related(rec.message, rec.raw):
                continue
            if kind is not None and rec.message.kind is not kind:
                continue
            if where is not None and not where(rec):
                continue
            got.append(rec)
        return got

    def wait_counterpart(self, kind: Kind, *, count: int = 1, within: float = 20.0,
                         where: Callable[[object], bool] | None = None) -> list[Captured]:
        """WAITING: until the counterpart has received `count` messages of `kind` for this scenario."""
        end = self.deadline(within)
        while True:
            found = self.counterpart_got(kind, where=where)
            if len(found) >= count or time.monotonic() >= end:
                break
            self.pause(0.1)
        return [self._capture_received(rec, "counterpart") for rec in found]

    def _capture_received(self, rec, party: str) -> Captured:
        key = (party, str(id(rec)))
        cached = getattr(self, "_received_cache", {}).get(key)
        if cached is not None:
            return cached
        cap = self._capture(rec.raw, party, str(rec.message.kind), "target", party,
                            expect=rec.message.kind if rec.message.kind not in (Kind.ORDINARY, Kind.UNKNOWN) else None,
                            note=" (STARTTLS)" if rec.tls else " (plain SMTP)", smtp=True)
        if not hasattr(self, "_received_cache"):
            self._received_cache = {}
        self._received_cache[key] = cap
        return cap

    def wait_ordinary(self, *, count: int = 1, within: float = 20.0) -> list[Captured]:
        end = self.deadline(within)
        while True:
            found = [r for r in list(self.world.ordinary.received) if self._related(r.message, r.raw)]
            if len(found) >= count or time.monotonic() >= end:
                break
            self.pause(0.1)
        return [self._capture_received(r, "ordinary") for r in found]


def _mark_subject(raw: bytes, marker: str) -> bytes:
    """Append `marker` to the Subject field (the first one), so the message's receipts can be told apart."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(b"subject:"):
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
                j += 1  # the marker goes after the folded continuation lines
            lines[j - 1] = lines[j - 1] + b" " + marker.encode()
            break
    else:
        lines.append(f"Subject: {marker}".encode())
    return b"\r\n".join(lines) + sep + body


# ------------------------------------------------------------------------------------------------
# Running


@dataclass
class ScenarioResult:
    spec: Scenario
    verdict: str
    findings: list[Finding]
    events: list[dict]
    evidence: list[str]
    started: float
    duration: float
    error: str | None = None
    expected: str | None = None
    reason: str | None = None

    def requirement_verdicts(self) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for f in self.findings:
            for r in f.requirements:
                out.setdefault(r, []).append(str(f.verdict))
        return {r: worst(vs) for r, vs in sorted(out.items())}


def apply_expectations(result: ScenarioResult, expectations: list[Expectation]) -> None:
    """Turn expected deviations into XFAIL, and report an expected deviation that did not happen (XPASS)."""
    relevant = [e for e in expectations if fnmatch.fnmatch(result.spec.id, e.scenario)]
    if not relevant:
        return
    for e in relevant:
        hit = False
        for f in result.findings:
            if str(f.verdict) == e.verdict and (e.requirement is None or e.requirement in f.requirements):
                f.expected_verdict, f.reason = e.verdict, e.reason  # type: ignore[attr-defined]
                f.verdict = "XFAIL"  # type: ignore[assignment]
                hit = True
        if e.verdict == "SKIP" and result.verdict == "SKIP":
            hit = True
        if not hit:
            f = Finding((e.requirement,) if e.requirement else result.spec.requirements[:1] or ("GEN-04",),
                        "XPASS", f"expected {e.verdict} did not happen: {e.reason}",  # type: ignore[arg-type]
                        expected=e.verdict, actual="no such finding", check=f"expectation.{result.spec.id}")
            f.expected_verdict, f.reason = e.verdict, e.reason  # type: ignore[attr-defined]
            result.findings.append(f)
        result.expected, result.reason = e.verdict, e.reason
    result.verdict = worst(str(f.verdict) for f in result.findings) if result.findings else result.verdict


def run_scenario(world: World, spec: Scenario, expectations: list[Expectation]) -> ScenarioResult:
    ctx = ScenarioContext(world, spec)
    wall = time.time()
    error = None
    verdict: str | None = None
    missing = [n for n in spec.needs if not world.profile.capability(n, False)]
    if spec.timers and "timers" not in missing and not world.profile.capability("timers", False):
        missing.append("timers")  # it waits on the target's own timers (hours on a real deployment)
    if world.cancel.is_set():
        verdict = "BLOCKED"
        ctx.blocked(spec.requirements or ("GEN-04",), f"not run: {world.cancel_reason or 'the run was stopped'}")
    elif missing:
        verdict = "SKIP"
        ctx.findings.append(Finding(spec.requirements[:1] or ("GEN-04",), Verdict.SKIP,
                                    f"the target does not declare {', '.join(missing)}",
                                    check=f"scenario.{spec.id}"))
    else:
        try:
            spec.func(ctx)
        except Blocked as exc:
            ctx.blocked(exc.requirements if exc.requirements is not None else spec.requirements or ("GEN-04",),
                        exc.precondition, only_unjudged=True)
            if not ctx.findings:
                ctx.blocked(spec.requirements[:1] or ("GEN-04",), exc.precondition)
        except Interrupted as exc:
            before = len(ctx.findings)
            ctx.blocked(spec.requirements or ("GEN-04",), f"not finished: {exc}", only_unjudged=True)
            if len(ctx.findings) == before:
                ctx.blocked(spec.requirements[:1] or ("GEN-04",), f"not finished: {exc}")
        except Skip as exc:
            verdict = "SKIP"
            ctx.findings.append(Finding(spec.requirements[:1] or ("GEN-04",), Verdict.SKIP, str(exc),
                                        check=f"scenario.{spec.id}"))
        except TargetFailure as exc:
            ctx.verdict(exc.requirements, False, str(exc), expected=exc.expected, actual=exc.actual)
        except HarnessError as exc:
            error = str(exc)
            ctx.findings.append(Finding(spec.requirements[:1] or ("GEN-04",), Verdict.ERROR, f"harness: {exc}",
                                        check=f"scenario.{spec.id}"))
        except Exception as exc:  # a scenario bug is the suite's problem, never the target's
            error = f"{type(exc).__name__}: {exc}"
            ctx.findings.append(Finding(spec.requirements[:1] or ("GEN-04",), Verdict.ERROR,
                                        f"scenario crashed: {error}", check=f"scenario.{spec.id}"))
    if verdict is None:
        verdict = worst(str(f.verdict) for f in ctx.findings) if ctx.findings else "ERROR"
        if not ctx.findings:
            error = error or "the scenario judged nothing"
    result = ScenarioResult(spec, verdict, ctx.findings, ctx.events, ctx.evidence_paths, wall,
                            time.monotonic() - ctx.started, error)
    apply_expectations(result, expectations)
    return result


class RunStopped(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler (Ctrl-C raises KeyboardInterrupt itself)."""


def stop_run(world: World, reason: str) -> None:
    """Stop the run: every wait ends at once, scenarios not started are not run."""
    if not world.cancel.is_set():
        world.cancel_reason = reason
        world.cancel.set()


def stop_reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, RunStopped) and str(exc) else "the run was interrupted (Ctrl-C)"


def not_run(spec: Scenario, reason: str) -> ScenarioResult:
    """The result of a scenario the run never got to (it was stopped first): BLOCKED, with the reason."""
    f = Finding(spec.requirements or ("GEN-04",), Verdict.BLOCKED, f"not run: {reason}", check=f"scenario.{spec.id}")
    return ScenarioResult(spec, "BLOCKED", [f], [], [], time.time(), 0.0, None)


def run_all(world: World, specs: list[Scenario], expectations: list[Expectation], *, jobs: int = 1,
            progress: Callable[[str, str, ScenarioResult | None], None] | None = None,
            deadline: float | None = None, grace: float = 5.0) -> list[ScenarioResult]:
    """Run scenarios, `jobs` at a time (they are independent: each matches its own token).

    `deadline` (time.monotonic()) is the run's overall limit. When it passes, or on Ctrl-C / SIGTERM
    (KeyboardInterrupt in the calling thread), the run stops: running scenarios get `grace` seconds to
    end (their waits end at once), and every scenario without a result is returned as not run (BLOCKED).
    `world.cancel` is then set and `world.cancel_reason` says why.
    """
    results: dict[str, ScenarioResult] = {}
    lock = threading.Lock()
    queue = list(specs)
    closed: list[bool] = []

    def worker():
        while True:
            with lock:
                if not queue or world.cancel.is_set():
                    return
                spec = queue.pop(0)
            if progress:
                progress(spec.id, "WAITING", None)
            r = run_scenario(world, spec, expectations)
            with lock:
                if closed:
                    return  # the run was stopped and its results already taken: this one is not in them
                results[spec.id] = r
            if progress:
                progress(spec.id, r.verdict, r)

    threads = [threading.Thread(target=worker, name=f"scenario-{i}", daemon=True) for i in range(max(1, jobs))]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if deadline is not None and time.monotonic() >= deadline:
                stop_run(world, "the run's overall deadline (--max-time) passed")
                break
            for t in threads:
                t.join(timeout=0.05)
    except KeyboardInterrupt as exc:
        stop_run(world, stop_reason(exc))
    if world.cancel.is_set():
        end = time.monotonic() + grace
        try:
            for t in threads:
                t.join(timeout=max(0.0, end - time.monotonic()))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting, write what there is
    with lock:
        done = dict(results)
        closed.append(True)
    reason = world.cancel_reason or "the run was stopped"
    return [done[s.id] if s.id in done else not_run(s, reason) for s in specs
            if s.id in done or world.cancel.is_set()]

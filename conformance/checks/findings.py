"""Verdicts, findings, the validation context and the registry of checks.

Every check is registered with the requirement IDs it can cite, so the catalogue can show which
checks cover which requirement and a test can prove no check cites an unknown ID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ..pec.constants import Kind
from ..pec.index import ProvidersIndex


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    INFO = "INFO"
    SKIP = "SKIP"
    ERROR = "ERROR"
    REVIEW = "REVIEW"
    BLOCKED = "BLOCKED"


@dataclass
class Finding:
    requirements: tuple[str, ...]
    verdict: Verdict
    message: str
    expected: str | None = None
    actual: str | None = None
    decision: str | None = None
    check: str = ""
    level: str = ""

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "requirements": list(self.requirements),
            "level": self.level,
            "verdict": str(self.verdict),
            "message": self.message,
            "expected": self.expected,
            "actual": self.actual,
            "decision": self.decision,
        }


@dataclass
class ValidationContext:
    """What the validator may know besides the message itself.

    Everything is optional: without an index or a CA the trust checks are SKIP, never FAIL.
    """

    index: ProvidersIndex | None = None
    ca_certificates: list = field(default_factory=list)
    crls: list = field(default_factory=list)
    now: datetime | None = None
    expected_kind: Kind | None = None
    # The original as the envelope carried it (postacert.eml of the envelope): lets a receipt's copy or
    # its brief hashes be compared (CON-08, CON-13, CON-23).
    carried_original: bytes | None = None
    # The identifier of the transaction's envelope, when known (FMT-12).
    identificativo: str | None = None
    # The bytes are exactly what the run received over SMTP, not a stored file (decision D35).
    captured_from_smtp: bool = False


def _as_tuple(reqs: str | Iterable[str]) -> tuple[str, ...]:
    return (reqs,) if isinstance(reqs, str) else tuple(reqs)


def passed(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.PASS, message, **kw)


def failed(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.FAIL, message, **kw)


def warned(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.WARN, message, **kw)


def info(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.INFO, message, **kw)


def skipped(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.SKIP, message, **kw)


def errored(reqs, message: str, **kw) -> Finding:
    return Finding(_as_tuple(reqs), Verdict.ERROR, message, **kw)


def verdict_of(ok: bool, reqs, message_ok: str, message_bad: str, **kw) -> Finding:
    return passed(reqs, message_ok, **kw) if ok else failed(reqs, message_bad, **kw)


CheckFunc = Callable[..., Iterator[Finding]]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    requirements: tuple[str, ...]
    func: CheckFunc
    description: str
    needs_body: bool


REGISTRY: list[CheckSpec] = []


def check(name: str, requirements: Iterable[str], *, needs_body: bool = True):
    """Register a check: `func(msg, ctx) -> Iterator[Finding]`, citing only `requirements`."""

    def wrap(func: CheckFunc) -> CheckFunc:
        doc = (func.__doc__ or "").strip().splitlines()
        REGISTRY.append(CheckSpec(name, tuple(requirements), func, doc[0] if doc else name, needs_body))
        return func

    return wrap

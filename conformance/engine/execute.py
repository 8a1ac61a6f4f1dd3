"""One run from start to end: stand the world up, preflight, the scenarios, under an overall deadline.

Ctrl-C, SIGTERM and the deadline stop the run the same way: waits end at once, the scenarios not
finished are returned as not run (BLOCKED, with the reason), and the caller still writes every report.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .core import (
    Expectation,
    RunStopped,
    Scenario,
    ScenarioResult,
    World,
    not_run,
    run_all,
    stop_reason,
    stop_run,
)
from .preflight import run_preflight
from .profile import TargetProfile

# Per scenario without the target's timers: its waits add up to well under a minute on a live target.
PER_SCENARIO_S = 60.0
SETUP_S = 300.0


def default_max_time(profile: TargetProfile, specs: list[Scenario], jobs: int, multiplier: float) -> float:
    """A deadline no honest run reaches: a minute per scenario (spread over the jobs), plus, when the
    target declares its timers and a scenario waits on them, twice its longest timer."""
    timed = [s for s in specs if s.timers or "timers" in s.needs]
    plain = len(specs) - len(timed)
    limit = SETUP_S + math.ceil(plain / max(1, jobs)) * PER_SCENARIO_S
    if timed and profile.capability("timers", False):
        longest = max([float(v) for v in profile.timers.values()] or [86400.0])
        limit += 2 * longest + math.ceil(len(timed) / max(1, jobs)) * PER_SCENARIO_S
    return limit * multiplier


@dataclass
class Execution:
    results: list[ScenarioResult]
    profile: TargetProfile | None
    stopped: str | None = None  # why the run was stopped early, if it was
    preflight: list[str] = field(default_factory=list)
    max_time: float | None = None


def _raise_stop(signum, frame) -> None:  # noqa: ARG001
    raise RunStopped(f"the run was stopped ({signal.Signals(signum).name})")


def execute(stage: contextlib.AbstractContextManager[World], specs: list[Scenario], expectations: list[Expectation],
            *, jobs: int, multiplier: float, max_time: float | None = None,
            progress: Callable | None = None, echo: Callable[[str], None] = print,
            preflight: bool = True) -> Execution:
    """Run `specs` in the world `stage` yields; see the module docstring for how a run stops. Without
    `preflight` every scenario runs whatever the target's state (each one's own controls still hold)."""
    started = time.monotonic()
    world: World | None = None
    results: list[ScenarioResult] | None = None
    pre_lines: list[str] = []
    stopped: str | None = None
    limit: float | None = max_time
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stop) if in_main else None
    try:
        with stage as world:
            if limit is None:
                limit = default_max_time(world.profile, specs, jobs, multiplier)
            pre = run_preflight(world) if preflight else None
            pre_lines = pre.lines if pre else []
            for line in pre_lines:
                echo(f"preflight: {line}")
            results = run_all(world, specs, expectations, jobs=jobs, progress=progress,
                              deadline=started + limit)
            if pre is not None and not pre.ok:
                results.insert(0, pre.result)  # in the report only when it found something
            if world.cancel.is_set():
                stopped = world.cancel_reason
    except KeyboardInterrupt as exc:
        stopped = stop_reason(exc)
        if world is not None:
            stop_run(world, stopped)
    finally:
        if in_main:
            # From here on the reports are written: a second signal must not cut them in half.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            del previous
    if results is None:
        results = [not_run(s, stopped or "the run was stopped") for s in specs]
    return Execution(results, world.profile if world is not None else None, stopped, pre_lines, limit)

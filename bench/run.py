"""Wall time of a full default run (every scenario against the built-in reference provider, timer
scenarios included with the scaled timers), and how much work it made: SMTP transactions and
signatures. Goal: under 60 seconds on a 2-core machine.

    python bench/run.py [--jobs 4]

Runs in this process (the reference provider, the counterpart and the engine all live here), so the
counts are exact: every SMTP transaction (counted at the DATA command of whichever server received
it: the target's points, the counterpart, the ordinary domain) and every CMS signature made by anyone.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiosmtpd.smtp

from conformance.engine import core
from conformance.engine.results import build_report
from conformance.pec import cms
from conformance.report.render import write_reports
from conformance.runner import builtin_target
from conformance.scenarios import __name__ as _registered  # noqa: F401

GOAL_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    counts = {"smtp": 0, "signatures": 0}
    real_data, real_sign = aiosmtpd.smtp.SMTP.smtp_DATA, cms._build_signed_data

    async def smtp_data(self, arg):  # every SMTP transaction reaches some server's DATA: count there
        counts["smtp"] += 1
        return await real_data(self, arg)

    def sign(*a, **kw):
        counts["signatures"] += 1
        return real_sign(*a, **kw)

    aiosmtpd.smtp.SMTP.smtp_DATA, cms._build_signed_data = smtp_data, sign
    specs = core.select(None, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        start = time.perf_counter()
        wall = time.time()
        with builtin_target(out, [], 1.0) as world:
            setup = time.perf_counter() - start
            results = core.run_all(world, specs, [], jobs=args.jobs)
            profile = world.profile
        elapsed = time.perf_counter() - start
        report = build_report(results, profile, started=wall, finished=time.time(), command=sys.argv,
                              multiplier=1.0, jobs=args.jobs, faults=[])
        write_reports(report, out)
    summary = report["summary"]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.jobs} jobs")
    print(f"scenarios         {len(results)}: " + ", ".join(f"{n} {v}" for v, n in summary["scenarios"].items() if n))
    print("requirements      " + ", ".join(f"{n} {v}" for v, n in summary["requirements"].items() if n))
    print(f"wall time         {elapsed:.1f} s (set-up {setup:.1f} s: PKI, reference provider, counterpart)")
    slowest = sorted(results, key=lambda r: -r.duration)[:5]
    print("slowest           " + ", ".join(f"{r.spec.id} {r.duration:.1f} s" for r in slowest))
    print(f"SMTP transactions {counts['smtp']}")
    print(f"signatures        {counts['signatures']}")
    print(f"peak RSS          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"goal              under {GOAL_SECONDS:.0f} s: {'met' if elapsed < GOAL_SECONDS else 'NOT met'}")
    return 0 if summary["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

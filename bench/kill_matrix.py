"""The kill matrix: the reference provider's fault catalogue against the scenarios.

Whole-suite mode (the default): for every fault, `pec-conformance run --reference-fault NAME` runs every
scenario against the built-in target with that one fault switched on; the fault is caught when the run
reports a FAIL, or the WARN the catalogue declares for it, citing one of the requirement IDs the fault
names. Prints fault -> caught (by which requirement IDs and scenarios) or missed, and the catch rate.

Per-requirement mode (`--per-requirement`): first the default run (no fault, every scenario) tells which
requirements get PASS and which scenarios judge each; then every fault runs only in the scenarios that
judge its requirements. A requirement is proven by a fault when that fault names it and a finding of the
fault's run turns it FAIL (or the WARN the catalogue declares for a SHOULD or a warning decision).
Prints, per requirement with PASS in the default run, the fault(s) seen to turn it, then
`proven=X/Y` and the wall time. `--sample N` does the same for N faults only (CI), with the default run
limited to the scenarios those faults need.

    python bench/kill_matrix.py [--per-requirement [--sample N]] [--parallel 2] [--fault NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conformance.pec.constants import Kind
from conformance.reference.faults import CATALOGUE, FAULTS, Fault
from conformance.runner import TARGET_DOMAINS

GOAL = 0.95
PER_REQUIREMENT_SCENARIOS = 3  # scenarios per requirement a fault runs in, when it names none itself
RUN_TIMEOUT = 900


def judge(fault: Fault, report: dict) -> dict:
    """Which findings of a run catch the fault."""
    wanted = {"FAIL"} if fault.verdict == "FAIL" else {"FAIL", "WARN"}
    hits: dict[str, set[str]] = {}
    for s in report["scenarios"]:
        for f in s["findings"]:
            if f["verdict"] in wanted:
                for rid in set(f["requirements"]) & set(fault.requirements):
                    hits.setdefault(rid, set()).add(s["id"])
    return {"caught": bool(hits), "by": {r: sorted(v) for r, v in sorted(hits.items())},
            "exit_code": report["summary"]["exit_code"],
            "failing": sorted(s["id"] for s in report["scenarios"] if s["verdict"] in ("FAIL", "ERROR"))}


def _run(faults: list[str], scenarios: list[str], jobs: int) -> tuple[dict | None, str, float]:
    """One `pec-conformance run` in a child process; its report (None when it wrote none, twice: a run that
    crashed at start-up, e.g. on a port another process took, is tried once more)."""
    report, stderr, elapsed = _run_once(faults, scenarios, jobs)
    if report is None:
        report, stderr, again = _run_once(faults, scenarios, jobs)
        elapsed += again
    return report, stderr, elapsed


def _run_once(faults: list[str], scenarios: list[str], jobs: int) -> tuple[dict | None, str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "conformance.cli", "run", "--quiet", "--jobs", str(jobs), "--out", tmp]
        for name in faults:
            cmd += ["--reference-fault", name]
        for sc in scenarios:
            cmd += ["--scenario", sc]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
            stderr = proc.stderr
        except subprocess.TimeoutExpired:
            stderr = f"run did not finish within {RUN_TIMEOUT} s"
        elapsed = time.perf_counter() - start
        path = Path(tmp) / "report.json"
        report = json.loads(path.read_text()) if path.exists() else None
    return report, stderr[-800:], elapsed


def run_one(name: str, jobs: int) -> dict:
    fault = CATALOGUE[name]
    report, stderr, elapsed = _run([name], [], jobs)
    if report is None:
        return {"fault": name, "caught": False, "by": {}, "error": stderr, "seconds": elapsed}
    result = judge(fault, report)
    result.update({"fault": name, "declared": fault.verdict, "requirements": list(fault.requirements),
                   "point": fault.point, "seconds": round(elapsed, 1)})
    return result


# ------------------------------------------------------------------------------------------- per requirement


def _made_by_target(event: dict) -> bool:
    """A message the built-in target made (not one of the counterpart's it relayed to a user): its msgid is
    in the target's domain, or it is an anomaly envelope (which keeps the received Message-ID)."""
    if event.get("from") != "target" or not event.get("kind"):
        return False
    return event["kind"] == Kind.BUSTA_ANOMALIA.value or \
        any((event.get("message_id") or "").rstrip(">").endswith("@" + d) for d in TARGET_DOMAINS)


def judged_by(report: dict) -> dict[str, list[dict]]:
    """Requirement -> the scenarios of a run that gave it PASS, with what each cites, sends and costs."""
    from conformance.engine.core import SCENARIOS
    from conformance.scenarios import __name__ as _registered  # noqa: F401

    out: dict[str, list[dict]] = {}
    for s in report["scenarios"]:
        spec = SCENARIOS.get(s["id"])
        kinds = {e["kind"] for e in s["events"] if _made_by_target(e)}
        for rid, verdict in s["requirements"].items():
            if verdict == "PASS":
                out.setdefault(rid, []).append({
                    "id": s["id"], "cites": bool(spec and rid in spec.requirements), "kinds": kinds,
                    "seconds": s["duration_s"]})
    return out


def scenarios_for(fault: Fault, judged: dict[str, list[dict]], known: list[str]) -> list[str]:
    """Where a fault is run: the scenarios it names, or for each requirement it names the few quickest
    scenarios that judged that requirement in the default run (those whose story cites it first and, for
    a fault that alters a kind of message, only those where the target sent that kind)."""
    if fault.scenarios:
        return sorted({sc for pattern in fault.scenarios for sc in known if fnmatch.fnmatchcase(sc, pattern)})
    kinds = {k.value for k in fault.kinds}
    chosen: set[str] = set()
    for rid in fault.requirements:
        rows = [r for r in judged.get(rid, []) if not kinds or r["kinds"] & kinds]
        rows.sort(key=lambda r: (not r["cites"], r["seconds"]))
        chosen.update(r["id"] for r in rows[:PER_REQUIREMENT_SCENARIOS])
    return sorted(chosen)


def prove(fault: Fault, report: dict | None) -> dict[str, list[str]]:
    """Requirement named by the fault -> scenarios of its run where a finding turned it FAIL (or the
    declared WARN)."""
    if report is None:
        return {}
    return judge(fault, report)["by"]


def collateral(fault: Fault, report: dict | None) -> list[str]:
    """FAILs of the fault's run citing requirements the fault does not name (a cascade, or a fault that is
    not one deviation)."""
    if report is None:
        return []
    return sorted({rid for s in report["scenarios"] for f in s["findings"] if f["verdict"] == "FAIL"
                   for rid in f["requirements"] if rid not in fault.requirements})


def per_requirement(names: list[str], parallel: int, jobs: int, sample: int | None) -> dict:
    from conformance.engine.core import SCENARIOS
    from conformance.scenarios import __name__ as _registered  # noqa: F401

    start = time.perf_counter()
    faults = [CATALOGUE[n] for n in names]
    known = list(SCENARIOS)
    if sample is not None:
        # Without a full default run: scenarios from the stories that cite the requirements (no timer
        # scenarios), message faults first (a missing message costs a whole wait), spread over the points.
        static = {rid: [{"id": s.id, "cites": True, "kinds": {k.value for k in Kind}, "seconds": 0.0}
                        for s in SCENARIOS.values() if rid in s.requirements and not s.timers]
                  for f in faults for rid in f.requirements}
        faults.sort(key=lambda f: f.flow)
        picked: list[Fault] = []
        for point in ("access", "incoming", "delivery", "tracking"):
            for f in faults:
                if len(picked) < sample and f.point == point and f not in picked \
                        and scenarios_for(f, static, known) and not f.scenarios:
                    picked.append(f)
                    break
        for f in faults:
            if len(picked) < sample and f not in picked and scenarios_for(f, static, known) and not f.scenarios:
                picked.append(f)
        faults = picked
        plan = {f.name: scenarios_for(f, static, known) for f in faults}
        baseline, err, _ = _run([], sorted({sc for v in plan.values() for sc in v}), jobs)
    else:
        baseline, err, _ = _run([], [], jobs)
    if baseline is None:
        raise SystemExit(f"the default run wrote no report: {err}")
    passed = sorted(r["id"] for r in baseline["requirements"] if r["verdict"] == "PASS")
    judged = judged_by(baseline)
    if sample is None:
        plan = {f.name: scenarios_for(f, judged, known) for f in faults}

    def one(fault: Fault) -> dict:
        scenarios = plan[fault.name]
        if not scenarios:
            return {"fault": fault.name, "scenarios": [], "proves": {}, "collateral": [], "seconds": 0.0,
                    "error": "no scenario judged its requirements in the default run"}
        report, stderr, elapsed = _run([fault.name], scenarios, jobs)
        return {"fault": fault.name, "scenarios": scenarios, "proves": prove(fault, report),
                "collateral": collateral(fault, report), "seconds": round(elapsed, 1),
                "error": None if report is not None else stderr}

    with ThreadPoolExecutor(max_workers=max(1, min(2, parallel))) as pool:
        rows = list(pool.map(one, faults))
    by_requirement: dict[str, list[str]] = {}
    for row in rows:
        for rid in row["proves"]:
            by_requirement.setdefault(rid, []).append(row["fault"])
    if sample is not None:  # Y: the sampled faults' requirements that had PASS
        scope = sorted({rid for f in faults for rid in f.requirements} & set(passed))
    else:
        scope = passed
    proven = [rid for rid in scope if rid in by_requirement]
    return {"rows": rows, "passed": scope, "proven": proven, "by_requirement": by_requirement,
            "unproven": [rid for rid in scope if rid not in by_requirement],
            "seconds": round(time.perf_counter() - start, 1)}


def print_per_requirement(result: dict) -> None:
    for rid in result["passed"]:
        faults = result["by_requirement"].get(rid)
        print(f"{rid:<7} {'proven by ' + ', '.join(sorted(faults)) if faults else 'UNPROVEN'}")
    print()
    for row in result["rows"]:
        if row["error"] or not row["proves"]:
            why = row["error"] or f"no FAIL citing {', '.join(CATALOGUE[row['fault']].requirements)} in " \
                                 f"{', '.join(row['scenarios'])}"
            print(f"fault {row['fault']}: proves nothing ({why.strip()})")
        elif row["collateral"]:
            print(f"fault {row['fault']}: also FAIL {', '.join(row['collateral'])}")
    print(f"\nproven={len(result['proven'])}/{len(result['passed'])}; wall time {result['seconds']:.0f} s")


# ------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-requirement", action="store_true",
                        help="each fault only in the scenarios judging its requirements; proven=X/Y")
    parser.add_argument("--sample", type=int, help="with --per-requirement: only N faults (CI)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (at most 2)")
    parser.add_argument("--jobs", type=int, default=None, help="scenario jobs per run (default 4, 2 per fault)")
    parser.add_argument("--fault", action="append", help="only these faults")
    parser.add_argument("--json", type=Path, help="write the matrix as JSON here")
    args = parser.parse_args(argv)
    names = args.fault or [f.name for f in FAULTS]
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    parallel = max(1, min(2, args.parallel))
    if args.per_requirement:
        result = per_requirement(names, parallel, args.jobs or 2, args.sample)
        print_per_requirement(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if len(result["proven"]) == len(result["passed"]) else 1
    if args.sample is not None:
        parser.error("--sample goes with --per-requirement")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        rows = list(pool.map(lambda n: run_one(n, args.jobs or 4), names))
    elapsed = time.perf_counter() - start
    caught = [r for r in rows if r["caught"]]
    width = max(len(n) for n in names)
    for r in rows:
        if r["caught"]:
            by = "; ".join(f"{rid} ({', '.join(sc[:3])}{'...' if len(sc) > 3 else ''})" for rid, sc in r["by"].items())
            print(f"{r['fault']:<{width}}  caught   {r['declared']:<4}  by {by}")
        else:
            why = r.get("error") or f"declared {', '.join(r['requirements'])}; failing scenarios: " \
                                    f"{', '.join(r.get('failing', [])) or 'none'}"
            print(f"{r['fault']:<{width}}  MISSED   {r.get('declared', '?'):<4}  {why}")
    rate = len(caught) / len(rows)
    print(f"\ncaught {len(caught)} of {len(rows)} faults ({100 * rate:.1f}%); goal >= {100 * GOAL:.0f}%: "
          f"{'met' if rate >= GOAL else 'NOT met'}; wall time {elapsed:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "caught": len(caught), "total": len(rows), "rate": rate},
                                        indent=2))
    return 0 if rate >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

"""The kill matrix: the whole suite once per fault of the reference provider's catalogue.

For every fault, `pec-conformance run --reference-fault NAME` runs every scenario against the built-in
target with that one fault switched on; the fault is caught when the run reports a FAIL, or the WARN
the catalogue declares for it, citing one of the requirement IDs the fault names. Prints fault ->
caught (by which requirement IDs and scenarios) or missed, and the catch rate (goal: at least 95%).

    python bench/kill_matrix.py [--parallel 2] [--fault NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conformance.reference.faults import CATALOGUE, FAULTS, Fault

GOAL = 0.95


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


def run_one(name: str, jobs: int) -> dict:
    fault = CATALOGUE[name]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--reference-fault", name, "--quiet",
                               "--jobs", str(jobs), "--out", tmp], capture_output=True, text=True, timeout=900)
        elapsed = time.perf_counter() - start
        path = Path(tmp) / "report.json"
        if not path.exists():
            return {"fault": name, "caught": False, "by": {}, "error": proc.stderr[-800:], "seconds": elapsed}
        result = judge(fault, json.loads(path.read_text()))
    result.update({"fault": name, "declared": fault.verdict, "requirements": list(fault.requirements),
                   "point": fault.point, "seconds": round(elapsed, 1)})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (each runs 4 scenario jobs)")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--fault", action="append", help="only these faults")
    parser.add_argument("--json", type=Path, help="write the matrix as JSON here")
    args = parser.parse_args()
    names = args.fault or [f.name for f in FAULTS]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        rows = list(pool.map(lambda n: run_one(n, args.jobs), names))
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

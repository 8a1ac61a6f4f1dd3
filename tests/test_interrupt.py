"""A run that is stopped (Ctrl-C, SIGTERM, --max-time) still writes all four reports, complete and valid,
with the scenarios it did not finish marked BLOCKED (not run), and exits 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.report.model import validate_report

# Scenarios that wait on the built-in target's scaled timers: several seconds each, long enough to stop.
SLOW = ["--scenario", "timeouts.*", "--jobs", "2"]


def _check_partial(out: Path, reason_words: str) -> dict:
    for name in ("report.json", "report.html", "junit.xml", "summary.md"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    assert reason_words in report["run"]["stopped"]
    ids = [s["id"] for s in report["scenarios"]]
    assert sorted(i for i in ids if i != "preflight") == sorted(
        ["timeouts.silent", "timeouts.presa-only", "timeouts.two-recipients", "timeouts.late-consegna",
         "timeouts.ordinary-recipient"])  # every selected scenario is there, finished or not
    unfinished = [s for s in report["scenarios"] if any(
        f["verdict"] == "BLOCKED" and ("not run" in f["message"] or "not finished" in f["message"])
        for f in s["findings"])]
    assert unfinished, "nothing marked as not run"
    for s in unfinished:
        assert s["verdict"] in ("BLOCKED", "FAIL", "ERROR", "WARN"), s  # never a clean PASS
    assert "Stopped early" in (out / "summary.md").read_text()
    assert "stopped early" in (out / "report.html").read_text()
    import junitparser

    xml = junitparser.JUnitXml.fromfile(str(out / "junit.xml"))
    assert sorted(c.name for suite in xml for c in suite) == sorted(ids)
    return report


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_writes_a_complete_partial_report_and_exits_2(tmp_path, signum):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "run", "--quiet", *SLOW, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        # Stop it once a scenario is under way (its evidence folder exists).
        while not any((out / "evidence").glob("timeouts.*")) and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.5)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, stdout + stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    _check_partial(out, "interrupted (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM")


def test_max_time_stops_the_run_with_a_complete_partial_report(tmp_path):
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", *SLOW, "--max-time", "6",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 30, elapsed  # 6 s, the grace for running scenarios, set-up and reports
    _check_partial(out, "deadline")


def test_the_default_deadline_grows_with_the_scenarios_and_the_declared_timers():
    from conformance.engine.core import SCENARIOS
    from conformance.engine.execute import default_max_time
    from conformance.engine.profile import TargetProfile
    from conformance.scenarios import __name__ as _scenarios  # noqa: F401

    specs = list(SCENARIOS.values())

    def profile(timers: bool) -> TargetProfile:
        return TargetProfile("x", ["x.test"], "a@x.test", "r@x.test", ("127.0.0.1", 1), "starttls",
                             ("127.0.0.1", 2), [], {"timeout": 86400.0}, {"timers": timers})

    short, long_ = default_max_time(profile(False), specs, 4, 1.0), default_max_time(profile(True), specs, 4, 1.0)
    assert 600 < short < 3 * 3600  # minutes, not hours, when no scenario waits on the target's timers
    assert long_ > 2 * 86400  # a day-long timer is waited out, twice over
    assert default_max_time(profile(False), specs, 4, 2.0) == 2 * short

"""Real timers, scaled: `counterpart serve` as a long-lived service with its state on disk, `run --long-timers`
that starts the 12 h / 24 h scenarios and exits, `resume` that later judges what arrived. The target is the
sandbox reference provider as its own process, its timers scaled to seconds (3 s / 4.5 s / 6 s); the
counterpart service is stopped and started again between the run and `resume`, which is a new process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dovecot import free_ports

from conformance.targetkit import render_profile, slug, write_kit

CLI = [sys.executable, "-m", "conformance.cli"]
NAME = "Gestore Esempio S.p.A."


class Sandbox:
    """A kit, a sandbox target made from its profile (free ports), and the processes started for it."""

    def __init__(self, base: Path):
        self.base = base
        self.kit = write_kit(base / "kit")
        ports = free_ports(4)
        text = render_profile()
        for old, new in zip(("port = 2587", "port = 2525", "port = 2626", "port = 2627"), ports, strict=True):
            text = text.replace(old, f"port = {new}")
        self.kit.profile.write_text(text)
        self.env = dict(os.environ, PEC_USER1_PASSWORD="lt-1", PEC_USER2_PASSWORD="lt-2", PEC_USER3_PASSWORD="lt-3")
        done = self.cli("reference", "init", "sandbox", "--for", "kit/profile.toml", "--counterpart-pki", "kit/pki")
        assert done.returncode == 0, done.stderr
        self.procs: list[subprocess.Popen] = []

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], cwd=self.base, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, *args: str, ready: str) -> subprocess.Popen:
        path = self.base / ready
        path.unlink(missing_ok=True)
        proc = subprocess.Popen([*CLI, *args, "--ready-file", ready], cwd=self.base, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.procs.append(proc)
        end = time.monotonic() + 30
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
            assert time.monotonic() < end, f"{args[:2]} not up within 30 s"
            time.sleep(0.1)
        return proc

    def target(self, *faults: str) -> subprocess.Popen:
        extra = [a for f in faults for a in ("--fault", f)]
        return self.start("reference", "serve", "--config", f"sandbox/{slug(NAME)}.toml", *extra, ready="target.ready")

    def service(self) -> subprocess.Popen:
        return self.start("counterpart", "serve", "--profile", "kit/profile.toml", "--counterpart-pki", "kit/pki",
                          "--state", "state", ready="service.ready")

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)


@pytest.fixture
def sandbox(tmp_path):
    s = Sandbox(tmp_path)
    yield s
    s.close()


def requirement_verdicts(report: dict, scenario: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for sc in report["scenarios"]:
        if sc["id"] == scenario:
            for f in sc["findings"]:
                for r in f["requirements"]:
                    out.setdefault(r, set()).add(f["verdict"])
    return out


def long_run(sandbox: Sandbox) -> dict:
    done = sandbox.cli("run", "--long-timers", "--target", "kit/profile.toml", "--counterpart-pki", "kit/pki",
                       "--counterpart-state", "state", "--out", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pec-conformance resume run" in done.stdout
    return json.loads((sandbox.base / "run/waiting.json").read_text())


def test_long_timers_complete_across_a_restart_of_the_service_and_the_suite(sandbox):
    sandbox.target()
    service = sandbox.service()
    waiting = long_run(sandbox)
    assert {e["id"] for e in waiting["scenarios"]} == {"long.silent", "long.presa-only"}
    assert all(e["record"] and e["due"] > waiting["started"] for e in waiting["scenarios"])
    assert not (sandbox.base / "run/report.json").exists()
    # The service goes down and comes back on the same state; what it received before is still there.
    sandbox.stop(service)
    journal = (sandbox.base / "state/journal.jsonl").read_text().splitlines()
    assert sum('"direction": "in"' in ln for ln in journal) == 2  # the two envelopes
    behaviours = json.loads((sandbox.base / "state/behaviours.json").read_text())
    assert sorted(b["name"] for b in behaviours.values()) == ["presa-only", "silent"]
    sandbox.service()
    if time.time() < waiting["due"]:
        early = sandbox.cli("resume", "run")
        assert early.returncode == 2 and "due" in early.stderr and "Traceback" not in early.stderr
    done = sandbox.cli("resume", "run", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((sandbox.base / "run/report.json").read_text())
    verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
    assert verdicts == {"long.silent": "PASS", "long.presa-only": "PASS"}, verdicts
    silent = requirement_verdicts(report, "long.silent")
    assert silent["TMO-02"] == {"PASS"} and silent["TMO-03"] == {"PASS"} and silent["TMO-06"] == {"PASS"}
    presa = requirement_verdicts(report, "long.presa-only")
    assert presa["TMO-04"] == {"PASS"} and presa["TMO-03"] == {"PASS"}
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (sandbox.base / "run" / name).is_file()
    # Evidence of both phases, numbered on from the start phase's.
    folder = sandbox.base / "run/evidence/long.silent"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == len(set(n[:3] for n in names)) and any("preavviso" in n for n in names), names


def test_long_timers_catch_a_target_whose_timers_are_wrong(sandbox):
    sandbox.target("trk-24h-early", "trk-presa-ignored")
    sandbox.service()
    long_run(sandbox)
    done = sandbox.cli("resume", "run", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((sandbox.base / "run/report.json").read_text())
    assert "FAIL" in requirement_verdicts(report, "long.silent")["TMO-03"]
    assert "FAIL" in requirement_verdicts(report, "long.presa-only")["TMO-04"]


def test_resume_without_a_long_timer_run_is_a_usage_error(tmp_path):
    done = subprocess.run([*CLI, "resume", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no long-timer run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr

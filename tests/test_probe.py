"""`pec-conformance probe`: a few transactions against the built-in target, appended to a JSON-lines
file; started again on the same file it resumes and computes availability over every line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from conformance.load.probe import read_results, summary


def _probe(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", "probe", "--file", str(path), "--every", "1s",
                           "--within", "20s", *args], capture_output=True, text=True, timeout=120, check=False)


def test_probe_resumes_from_its_file(tmp_path):
    path = tmp_path / "probe.jsonl"
    first = _probe(path, "--count", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = read_results(path)
    assert [r["seq"] for r in lines] == [0, 1] and all(r["ok"] and r["accept_s"] is not None for r in lines)
    assert lines[1]["at"] - lines[0]["at"] >= 0.9  # one per interval
    with open(path, "a") as fh:  # an outage recorded by an earlier run, and a line cut by a crash
        fh.write(json.dumps({"seq": 2, "at": time.time() - 1, "ok": False, "accepted": False, "accept_s": None,
                             "delivery_s": None, "error": "connection refused", "fail": []}) + "\n{\"seq\": 3, \"at")
    second = _probe(path, "--count", "1")
    assert second.returncode == 1  # the window holds an unavailable transaction
    lines = read_results(path)
    assert [r["seq"] for r in lines] == [0, 1, 2, 3]
    assert "4 transactions" in second.stdout and "availability 75.0 %" in second.stdout, second.stdout
    s = summary(lines)
    assert s["availability"] == 75.0 and s["acceptance"]["count"] == 3 and s["delivery"]["count"] == 3


def test_probe_stops_on_sigterm(tmp_path):
    path = tmp_path / "probe.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "probe", "--file", str(path), "--every", "30s",
                             "--within", "20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not read_results(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)  # it does not wait out the 30 s interval
    assert proc.returncode == 0, out + err
    assert len(read_results(path)) == 1 and "1 transactions" in out

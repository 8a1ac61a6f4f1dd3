"""`pec-conformance run` end to end: the built-in target, reports, expectations, diff, and a hostile target."""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conformance.report.model import validate_report

SUBSET = ["--scenario", "acceptance.single", "--scenario", "acceptance.bcc-refused", "--scenario",
          "delivery.sintetica"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run-clean")
    proc = run(*SUBSET, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_default_run_writes_four_valid_reports(clean_run):
    for name in ("report.json", "report.html", "junit.xml", "summary.md"):
        assert (clean_run / name).is_file(), name
    report = json.loads((clean_run / "report.json").read_text())
    assert validate_report(report) == []
    assert report["summary"]["exit_code"] == 0
    assert {s["id"] for s in report["scenarios"]} == {"acceptance.single", "acceptance.bcc-refused",
                                                      "delivery.sintetica"}
    assert all(s["verdict"] == "PASS" for s in report["scenarios"])
    # evidence: every path named in the report exists, written before it was judged
    for s in report["scenarios"]:
        assert s["evidence"], s["id"]
        for path in s["evidence"]:
            assert (clean_run / path).is_file(), path
    import junitparser

    xml = junitparser.JUnitXml.fromfile(str(clean_run / "junit.xml"))
    cases = [c for suite in xml for c in suite]
    assert sorted(c.name for c in cases) == sorted(s["id"] for s in report["scenarios"])
    assert all(c.classname for c in cases)


def test_a_fault_fails_the_run_and_names_the_requirement(tmp_path):
    proc = run("--scenario", "acceptance.single", "--reference-fault", "acc-subject-prefix", "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    fails = {r for s in report["scenarios"] for f in s["findings"] if f["verdict"] == "FAIL"
             for r in f["requirements"]}
    assert "FMT-18" in fails
    assert "FMT-18" in (tmp_path / "summary.md").read_text()


def test_expectations_turn_a_known_deviation_into_xfail_and_an_absent_one_into_xpass(tmp_path):
    expectations = tmp_path / "expected.toml"
    expectations.write_text('[[expected]]\nscenario = "acceptance.single"\nrequirement = "FMT-18"\nverdict = "FAIL"\n'
                            'reason = "known: our receipts use a lower-case prefix until release 7"\n')
    out = tmp_path / "with-fault"
    proc = run("--scenario", "acceptance.single", "--reference-fault", "acc-subject-prefix", "--expectations",
               str(expectations), "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    verdicts = {f["verdict"] for s in report["scenarios"] for f in s["findings"] if "FMT-18" in f["requirements"]}
    assert "XFAIL" in verdicts and "FAIL" not in verdicts
    assert proc.returncode == 0, proc.stdout
    out = tmp_path / "fixed"
    proc = run("--scenario", "acceptance.single", "--expectations", str(expectations), "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["scenarios"][0]["verdict"] == "XPASS"  # the deviation is gone: loud
    assert proc.returncode == 1


def test_diff_reports_regression_between_two_runs(tmp_path, clean_run):
    out = tmp_path / "faulty"
    run(*SUBSET, "--reference-fault", "acc-subject-prefix", "--out", str(out))
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "diff", str(clean_run / "report.json"),
                           str(out / "report.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "acceptance.single" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "diff", str(clean_run / "report.json"),
                           str(clean_run / "report.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0


def test_list_requirements_shows_the_last_run(clean_run):
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "list", "--requirements", "--json", "--report",
                           str(clean_run / "report.json")], capture_output=True, text=True, timeout=60)
    data = json.loads(proc.stdout)
    by_id = {r["id"]: r for r in data["requirements"]}
    assert by_id["ACC-12"]["exercised"] is True and by_id["ACC-12"]["last_run"] == "PASS"
    assert data["exercised"] >= 20


def test_usage_errors_exit_2(tmp_path):
    assert run("--reference-fault", "no-such-fault", "--out", str(tmp_path)).returncode == 2
    assert run("--scenario", "no.such.scenario", "--out", str(tmp_path)).returncode == 2


# ------------------------------------------------------------------------------------------------
# A hostile target: garbage for a greeting, dropped connections, silence, an XML bomb.


class _Garbage(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(os.urandom(64) + b"\r\n\x00\xff garbage\r\n")
        time.sleep(0.2)


class _Drop(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.close()


class _Silent(socketserver.BaseRequestHandler):
    def handle(self):
        time.sleep(8)  # never greets; the suite's deadline must end the wait


BOMB = ("<?xml version=\"1.0\"?>\n<!DOCTYPE postacert [<!ENTITY a \"aaaaaaaaaa\">"
        + "".join(f"<!ENTITY {chr(98 + i)} \"" + f"&{chr(97 + i)};" * 10 + "\">" for i in range(9))
        + "]>\n<postacert tipo=\"accettazione\"><intestazione><mittente>&j;</mittente></intestazione></postacert>\n")


class _Bomber(socketserver.StreamRequestHandler):
    """Speaks just enough SMTP to take a submission, then drops an 'acceptance' whose daticert is an
    entity bomb into the sender's Maildir, with the scenario's subject (a target trying to hurt the suite)."""

    maildir: Path
    tls: object  # ssl.SSLContext with a certificate the suite trusts: it gets past STARTTLS and AUTH

    def handle(self):
        w = self.wfile.write
        w(b"220 evil ESMTP\r\n")
        data_mode, lines, subject = False, [], b""
        while True:
            w = self.wfile.write
            line = self.rfile.readline(100000)
            if not line:
                return
            if data_mode:
                if line in (b".\r\n", b".\n"):
                    data_mode = False
                    for ln in lines:
                        if ln.lower().startswith(b"subject:"):
                            subject = ln[8:].strip()
                    self._bomb(subject)
                    w(b"250 queued\r\n")
                    lines = []
                else:
                    lines.append(line)
                continue
            cmd = line[:4].upper()
            if cmd == b"STAR":
                w(b"220 go ahead\r\n")
                self.wfile.flush()
                self.request = self.tls.wrap_socket(self.request, server_side=True)
                self.rfile = self.request.makefile("rb")
                self.wfile = self.request.makefile("wb", buffering=0)
                continue
            if cmd in (b"EHLO", b"HELO"):
                w(b"250-evil\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif cmd == b"AUTH":
                w(b"235 ok\r\n")
            elif cmd == b"DATA":
                data_mode = True
                w(b"354 go\r\n")
            elif cmd == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")

    def _bomb(self, subject: bytes) -> None:
        import base64

        xml = base64.encodebytes(BOMB.encode()).replace(b"\n", b"\r\n")
        raw = (b"From: posta-certificata@evil.test\r\nTo: mario@evil.test\r\nSubject: ACCETTAZIONE: " + subject
               + b"\r\nX-Ricevuta: accettazione\r\nMessage-ID: <bomb@evil.test>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
               b"--b\r\nContent-Type: application/xml; name=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n"
               b"\r\n" + xml + b"--b--\r\n")
        new = self.maildir / "new"
        (new / f"{time.time():.6f}.bomb").write_bytes(raw)


def _serve(handler) -> tuple[socketserver.ThreadingTCPServer, int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize("access_kind", ["garbage", "drop", "silent", "bomb"])
def test_a_hostile_target_ends_within_its_deadlines_with_fail_or_error(tmp_path, access_kind):
    pki = tmp_path / "pki"
    assert subprocess.run([sys.executable, "-m", "conformance.cli", "pki", "init", str(pki), "--provider",
                           "Gestore Controparte S.p.A.", "--domain", "pec.controparte.test"],
                          capture_output=True, timeout=60).returncode == 0
    boxes = []
    for name in ("mario", "giulia"):
        box = tmp_path / "mail" / name
        for sub in ("new", "cur", "tmp"):
            (box / sub).mkdir(parents=True)
        boxes.append(box)
    import ssl

    from cryptography.hazmat.primitives import serialization

    from conformance.pec.pki import issue_tls_server_certificate, load_pki_directory, private_key_pem

    layout = load_pki_directory(pki)
    key, cert = issue_tls_server_certificate(layout.ca, ("127.0.0.1", "localhost"))
    (tmp_path / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(private_key_pem(key))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(tmp_path / "tls.pem"), str(tmp_path / "tls.key"))
    handler = {"garbage": _Garbage, "drop": _Drop, "silent": _Silent,
               "bomb": type("B", (_Bomber,), {"maildir": boxes[0], "tls": tls})}[access_kind]
    access, access_port = _serve(handler)
    incoming, incoming_port = _serve(_Drop)
    profile = tmp_path / "target.toml"
    profile.write_text(f'''name = "Gestore Ostile S.p.A."
domains = ["evil.test"]
[access]
host = "127.0.0.1"
port = {access_port}
tls = "starttls"
[incoming]
host = "127.0.0.1"
port = {incoming_port}
[[mailboxes]]
address = "mario@evil.test"
url = "maildir://{boxes[0]}"
password_env = "EVIL_PASSWORD"
[[mailboxes]]
address = "giulia@evil.test"
url = "maildir://{boxes[1]}"
password_env = "EVIL_PASSWORD"
[trust]
ca = "{pki / 'ca' / 'ca.pem'}"
[timers]
preavviso = 1
timeout = 2
window_start = 1.5
[capabilities]
ordinary_mail = "anomaly"
''')
    out = tmp_path / "report"
    env = dict(os.environ, EVIL_PASSWORD="not-a-real-password")
    start = time.monotonic()
    # The bomb lands only when a submission is made: preflight (which sees no envelope leave) would block them.
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target", str(profile),
                           "--counterpart-pki", str(pki), "--timeout-multiplier", "0.1", "--out", str(out),
                           "--scenario", "acceptance.*", "--scenario", "delivery.*",
                           *(["--no-preflight"] if access_kind == "bomb" else [])],
                          capture_output=True, text=True, timeout=300, env=env)
    elapsed = time.monotonic() - start
    access.shutdown()
    incoming.shutdown()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr
    assert elapsed < 240
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (out / name).is_file()
    verdicts = {s["verdict"] for s in report["scenarios"]}
    assert verdicts <= {"FAIL", "ERROR", "SKIP", "PASS", "WARN", "BLOCKED"}
    assert verdicts & {"FAIL", "ERROR"}
    assert "not-a-real-password" not in (out / "report.json").read_text()
    if access_kind == "bomb":
        judged = [f for s in report["scenarios"] for f in s["findings"]
                  if f["verdict"] in ("FAIL", "ERROR") and ("FMT-07" in f["requirements"]
                                                             or "FMT-23" in f["requirements"])]
        assert judged, "the entity bomb was not reported"


def test_a_real_runs_html_report_renders_in_headless_chromium(clean_run, tmp_path):
    """The report of a real run, opened in Debian's Chromium: summary counts and every scenario are there,
    and every evidence link resolves; a screenshot is kept next to it."""
    from lxml import html as lxml_html
    from test_report import _run_chromium

    report = json.loads((clean_run / "report.json").read_text())
    page = (clean_run / "report.html").resolve().as_uri()
    doc = lxml_html.fromstring(_run_chromium(tmp_path / "dom", "--dump-dom", page).stdout)
    for verdict, n in report["summary"]["scenarios"].items():
        assert doc.get_element_by_id(f"summary-scenarios-{verdict}").text_content().strip() == str(n)
    for s in report["scenarios"]:
        assert doc.get_element_by_id(f"scenario-{s['id']}").get("data-verdict") == s["verdict"]
    for href in doc.xpath("//*[local-name()='a']/@href"):
        if not href.startswith("#"):  # evidence, and the docs/ entries of requirement and decision IDs
            assert (clean_run / href.split("#")[0]).is_file(), href
    shot = clean_run / "report.png"
    _run_chromium(tmp_path / "shot", f"--screenshot={shot}", "--window-size=1280,2400", page)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


# ------------------------------------------------------------------------------------------------
# Timers: a scenario that waits on the target's own timers runs only when the target declares them.


def test_every_scenario_waiting_on_the_targets_timers_is_gated():
    import inspect

    from conformance.engine.core import SCENARIOS
    from conformance.scenarios import __name__ as _scenarios  # noqa: F401

    for spec in SCENARIOS.values():
        source = inspect.getsource(spec.func)
        if "ctx.timer(" in source or "_dispatch(" in source:
            assert spec.timers or "has_timers()" in source, f"{spec.id} waits on the target's timers ungated"


def test_without_declared_timers_no_scenario_waits_for_them(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes import FakeTarget, counterpart_pki

    pki, tls = counterpart_pki(tmp_path)
    fake = FakeTarget(tmp_path / "fake", "relay", tls).start()
    try:
        profile = tmp_path / "target.toml"
        # A day-long timeout, undeclared timers: a scenario that waited on it would hit the test's timeout.
        profile.write_text(fake.profile(pki, timers=False).replace("timeout = 2", "timeout = 86400"))
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target", str(profile),
                               "--counterpart-pki", str(pki), "--timeout-multiplier", "0.05", "--out",
                               str(tmp_path / "out"), "--scenario", "transaction.*", "--scenario", "timeouts.*",
                               "--scenario", "delivery.completa"], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, **fake.environment()))
    finally:
        fake.stop()
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
    for sid in ("transaction.peer-defers", "transaction.late-presa", "timeouts.silent", "timeouts.presa-only"):
        assert verdicts[sid] == "SKIP", (sid, verdicts[sid])
    tmo07 = [f["verdict"] for s in report["scenarios"] if s["id"] == "delivery.completa" for f in s["findings"]
             if "TMO-07" in f["requirements"]]
    assert "PASS" not in tmo07

"""The command line, run as a user runs it (a real process, real files)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.pec.constants import PEC_KINDS


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    proc = run("sample", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_sample_writes_the_14_kinds_and_they_validate_with_exit_0(sample_dir):
    files = sorted(sample_dir.glob("*.eml"))
    assert {f.stem for f in files} == {str(k) for k in PEC_KINDS}
    proc = run("validate", *map(str, files), "--index", str(sample_dir / "providers.ldif"),
               "--ca", str(sample_dir / "ca.pem"), "--crl", str(sample_dir / "crl.pem"),
               "--original", str(sample_dir / "original" / "carried.eml"), "--json")
    assert proc.returncode == 0, proc.stdout[-2000:]
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 0
    assert len(report["files"]) == 14
    for entry in report["files"]:
        assert entry["kind"] == Path(entry["file"]).stem
        assert entry["summary"].get("FAIL", 0) == 0
        assert all(f["requirements"] for f in entry["findings"])


def test_a_fail_gives_exit_1_and_names_the_requirement(sample_dir, tmp_path):
    raw = (sample_dir / "accettazione.eml").read_bytes()
    broken = tmp_path / "bad.eml"
    broken.write_bytes(raw.replace(b"X-Ricevuta: accettazione", b"X-Ricevuta: accetazione", 1))
    proc = run("validate", str(broken))
    assert proc.returncode == 1
    assert "GEN-04" in proc.stdout and "FAIL" in proc.stdout


def test_unreadable_file_and_bad_usage_give_exit_2(tmp_path):
    assert run("validate", str(tmp_path / "missing.eml")).returncode == 2
    assert run("validate").returncode == 2
    assert run("validate", "x.eml", "--index", str(tmp_path / "none.ldif")).returncode == 2


def test_list_requirements_json_covers_the_catalogue():
    proc = run("list", "--requirements", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["total"] == 229 == len(data["requirements"])
    by_id = {r["id"]: r for r in data["requirements"]}
    assert "headers.subject" in by_id["FMT-18"]["checks"]
    assert "signature.cms" in by_id["SIG-01"]["checks"]
    assert data["cited"] >= 100


def test_pki_init_then_validate_with_the_signed_index(tmp_path, sample_dir):
    pki = tmp_path / "pki"
    proc = run("pki", "init", str(pki), "--provider", "Gestore Gamma S.p.A.", "--domain", "pec.gamma.test",
               "--provider", "Gestore Delta S.p.A.", "--domain", "pec.delta.test,cert.delta.test")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((pki / "pki.json").read_text())
    assert len(manifest["providers"]) == 2
    for rel in ("ca/ca.pem", "ca/crl.pem", "index/providers.ldif", "index/providers.ldif.p7m"):
        assert (pki / rel).is_file(), rel
    ldif = (pki / "index" / "providers.ldif").read_text()
    assert "managedDomains: cert.delta.test" in ldif and "providerCertificateHash:" in ldif
    # A message signed by a provider outside that index fails on origin (RIC-05)...
    msg = str(sample_dir / "accettazione.eml")
    proc = run("validate", msg, "--index", str(pki / "index" / "providers.ldif.p7m"),
               "--index-signer", str(pki / "index" / "index-signer.pem"))
    assert proc.returncode == 1 and "RIC-05" in proc.stdout
    # ...and a wrong index signer is a usage error, not a verdict on the message.
    proc = run("validate", msg, "--index", str(pki / "index" / "providers.ldif.p7m"),
               "--index-signer", str(pki / "ca" / "ca.pem"))
    assert proc.returncode == 2


def test_pki_revoke_updates_the_crl(tmp_path):
    pki = tmp_path / "pki"
    assert run("pki", "init", str(pki), "--provider", "Gestore Gamma S.p.A.", "--domain",
               "pec.gamma.test").returncode == 0
    cert = next((pki / "providers").glob("*/cert.pem"))
    proc = run("pki", "revoke", str(pki), str(cert))
    assert proc.returncode == 0, proc.stderr
    from cryptography import x509

    crl = x509.load_pem_x509_crl((pki / "ca" / "crl.pem").read_bytes())
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_run_keep_prunes_older_runs_in_the_default_folder(tmp_path):
    reports = tmp_path / "reports"
    for stamp in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (reports / stamp / "evidence").mkdir(parents=True)
        (reports / stamp / "report.json").write_text("{}")
    (reports / "notes").mkdir()  # not a run: left alone
    proc = run("run", "--scenario", "acceptance.single", "--quiet", "--keep", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = sorted(p.name for p in reports.iterdir() if (p / "report.json").is_file())
    assert len(runs) == 2 and runs[0] == "20250103T000000Z" and (reports / "notes").is_dir()
    assert "removed old run" in proc.stdout


def test_progress_says_running_and_counts_in_order(tmp_path):
    proc = run("run", "--scenario", "acceptance.single", "--scenario", "acceptance.bcc-refused", "--jobs", "2",
               "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WAITING" not in proc.stderr and proc.stderr.count("RUNNING") == 2
    counters = re.findall(r"(\d+)/2 ", proc.stderr)
    assert counters == ["1", "2"], proc.stderr


def test_reference_faults_has_column_headers():
    proc = run("reference", "faults")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0].split() == ["FAULT", "POINT", "VERDICT", "REQUIREMENTS", "DESCRIPTION"]


def test_validate_says_what_a_decision_is(tmp_path):
    assert run("sample", str(tmp_path / "s"), "--digest", "sha1").returncode == 0
    proc = run("validate", str(tmp_path / "s" / "accettazione.eml"))
    assert "(D16)" in proc.stdout
    assert "`pec-conformance explain D16` prints it" in proc.stdout.splitlines()[-1]

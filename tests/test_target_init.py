"""Getting a provider started: `target init` writes the kit, the example profile is that kit's profile and
runs as shipped against the local reference sandbox, a missing file is a one-line usage error, and the
README's "Against a real deployment" walkthrough runs command by command, as written there."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.engine.profile import load_profile
from conformance.pec.index import load_index
from conformance.pec.pki import load_forgery_material, load_pki_directory
from conformance.targetkit import render_profile, write_kit

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "target-profile.example.toml"
CLI = [sys.executable, "-m", "conformance.cli"]


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_target_init_writes_the_pki_the_profile_and_the_checklist(tmp_path):
    kit = write_kit(tmp_path / "kit")
    layout = load_pki_directory(kit.pki)
    assert [p.domains for p in layout.providers] == [("pec.controparte.test",)]
    index, signed = load_index((kit.pki / "index/providers.ldif.p7m").read_bytes(), layout.index_signer_certificate)
    assert signed.signer_trusted and index.is_pec_domain("pec.controparte.test")
    assert (kit.pki / "ca/crl.pem").is_file() and (kit.pki / "tls/cert.pem").is_file()
    assert "revoked" in load_forgery_material(kit.pki, layout.providers[0].provider_name)
    # The example in fixtures/ is this profile byte for byte: it cannot drift from what users get.
    assert kit.profile.read_text() == FIXTURE.read_text() == render_profile()
    profile = load_profile(kit.profile)
    assert profile.counterpart_domain == "pec.controparte.test" and len(profile.mailboxes) == 3
    assert profile.published_index is not None and profile.published_index_signer is not None
    text = kit.checklist.read_text()
    for item in ("providers.ldif.p7m", "index-signer.pem", "ca/ca.pem", "crl.pem", "Routing", "pec.controparte.test",
                 "esterno.test", "PEC_USER1_PASSWORD", "mailboxes"):
        assert item in text, item


def test_target_init_with_own_names_and_refusing_a_full_folder(tmp_path):
    done = cli("target", "init", "kit", "--name", "Gestore Prova S.r.l.", "--domain", "pec.prova.test", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    profile = load_profile(tmp_path / "kit/profile.toml")
    assert profile.name == "Gestore Prova S.r.l." and profile.domains == ["pec.prova.test"]
    assert profile.signing_certificate.name == "cert.pem" and "gestore-prova-s-r-l" in str(profile.signing_certificate)
    again = cli("target", "init", "kit", cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_a_missing_file_is_a_one_line_usage_error_and_writes_nothing(tmp_path):
    (tmp_path / "fixtures").mkdir()
    shutil.copy(FIXTURE, tmp_path / "fixtures" / FIXTURE.name)
    write_kit(tmp_path / "kit")
    done = cli("run", "--target", f"fixtures/{FIXTURE.name}", "--counterpart-pki", "kit/pki", "--out", "out",
               cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not found" in lines[0] and "trust.ca" in lines[0] and "sandbox/pki/ca/ca.pem" in lines[0]
    assert not (tmp_path / "out").exists()
    # Without the sandbox the reference init names the passwords it needs, in one line too.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("PEC_USER")}
    refused = cli("reference", "init", "sandbox", "--for", f"fixtures/{FIXTURE.name}", "--counterpart-pki",
                  "kit/pki", cwd=tmp_path, env=bare)
    assert refused.returncode == 2 and "PEC_USER1_PASSWORD" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def readme_walkthrough() -> list[str]:
    """The commands of the README's "Against a real deployment" section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Against a real deployment", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the walkthrough is one sh block"
    return [ln.strip() for ln in blocks[0].splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _wait_ready(path: Path, proc: subprocess.Popen, within: float = 30.0) -> None:
    end = time.monotonic() + within
    while not path.exists():
        assert proc.poll() is None, f"the background command exited with {proc.returncode}"
        assert time.monotonic() < end, f"{path} not written within {within} s"
        time.sleep(0.1)


def test_the_readme_walkthrough_runs_command_by_command(tmp_path):
    commands = readme_walkthrough()
    assert commands[0].startswith("pec-conformance target init")
    env = dict(os.environ)
    background: list[subprocess.Popen] = []
    ran_run = False
    try:
        for line in commands:
            words = shlex.split(line)
            if words[0] == "export":
                env.update(w.split("=", 1) for w in words[1:])
                continue
            if words[0] == "kill":
                assert words[1:] == ["%1"] and background, line
                # Before the sandbox stops: the example profile of fixtures/, as shipped, runs against it too.
                (tmp_path / "fixtures").mkdir()
                shutil.copy(FIXTURE, tmp_path / "fixtures" / FIXTURE.name)
                example = cli("run", "--target", f"fixtures/{FIXTURE.name}", "--counterpart-pki", "kit/pki",
                              "--scenario", "acceptance.single", "--out", "example", "--quiet", cwd=tmp_path, env=env)
                assert example.returncode == 0, example.stdout + example.stderr
                background[0].terminate()
                assert background[0].wait(timeout=20) == 0
                continue
            assert words[0] == "pec-conformance", line
            if words[-1] == "&":
                proc = subprocess.Popen([*CLI, *words[1:-1]], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
                background.append(proc)
                if "--ready-file" in words:
                    _wait_ready(tmp_path / words[words.index("--ready-file") + 1], proc)
                continue
            done = subprocess.run([*CLI, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            if words[1] == "run":
                ran_run = True
                out = tmp_path / words[words.index("--out") + 1]
                report = json.loads((out / "report.json").read_text())
                verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
                assert verdicts["acceptance.single"] == "PASS" and "FAIL" not in verdicts.values()
                assert sum(v == "PASS" for v in verdicts.values()) >= 50, verdicts
    finally:
        for proc in background:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert ran_run


@pytest.mark.parametrize("missing", ["kit/pki/index/providers.ldif.p7m", "kit/pki/ca/ca.pem"])
def test_reference_init_for_refuses_an_incomplete_counterpart_pki(tmp_path, missing):
    write_kit(tmp_path / "kit")
    (tmp_path / missing).unlink()
    env = dict(os.environ, PEC_USER1_PASSWORD="a", PEC_USER2_PASSWORD="b", PEC_USER3_PASSWORD="c")
    done = cli("reference", "init", "sandbox", "--for", "kit/profile.toml", "--counterpart-pki", "kit/pki",
               cwd=tmp_path, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "kit/pki" in done.stderr

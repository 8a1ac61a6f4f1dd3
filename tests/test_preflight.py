"""Preflight (`pec-conformance preflight`, and the first step of `run`), the profile's login names, and
the engine's judgement of refusals (a refusal counts only for the defect, against an accepted control)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from fakes import FakeTarget, counterpart_pki

from conformance.engine.core import Control, Scenario, ScenarioContext, SubmitOutcome, named_causes
from conformance.engine.profile import ProfileError, load_profile


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return counterpart_pki(tmp_path_factory.mktemp("preflight-pki"))


def preflight(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", "preflight", *args], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, **(env or {})))


def against(fake: FakeTarget, pki_dir, *, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    profile = fake.folder / "target.toml"
    profile.write_text(fake.profile(pki_dir))
    start = time.monotonic()
    proc = preflight("--target", str(profile), "--counterpart-pki", str(pki_dir), "--timeout-multiplier", "0.1",
                     env={**fake.environment(), **(env or {})})
    return proc, time.monotonic() - start


def test_preflight_of_the_built_in_target_passes_in_seconds():
    start = time.monotonic()
    proc = preflight()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    lines = proc.stdout.splitlines()
    assert all(line.startswith("ok ") for line in lines), lines
    text = proc.stdout
    for what in ("access point", "AUTH as", "incoming point", "opens", "reached the counterpart"):
        assert what in text, what


def test_a_login_that_fails_names_the_mailbox_and_the_reply(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "relay", tls).start()
    try:
        proc, elapsed = against(fake, pki_dir, env={"FAKE_PEC_PASSWORD_2": "wrong"})
    finally:
        fake.stop()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1, proc.stdout
    assert "utente2@pec.finto.test" in errors[0] and "'utente2'" in errors[0] and "535" in errors[0], errors
    assert "reached the counterpart" in proc.stdout  # the other users still work: a relay delivers
    assert elapsed < 30


def test_a_refused_correct_message_is_one_acc17_failure(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "refuse-all", tls).start()
    try:
        proc, _ = against(fake, pki_dir)
    finally:
        fake.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert len(fails) == 1 and "ACC-17" in fails[0] and "554" in fails[0], proc.stdout


def test_an_accepted_message_that_goes_nowhere_is_an_acc17_failure(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "accept-all", tls).start()
    try:
        proc, elapsed = against(fake, pki_dir)
    finally:
        fake.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing reached the counterpart" in proc.stdout
    assert elapsed < 30


def test_an_endpoint_that_does_not_answer_is_named(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "relay", tls).start()
    fake.stop()  # its ports are closed now
    proc, _ = against(fake, pki_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"access point 127.0.0.1:{fake.access_port} does not answer" in proc.stdout
    assert f"incoming point 127.0.0.1:{fake.incoming_port} does not answer" in proc.stdout


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the defect under test
def test_an_incoming_point_demanding_auth_from_peers_is_named(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "relay", tls, incoming_auth=True).start()
    try:
        proc, _ = against(fake, pki_dir)
    finally:
        fake.stop()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and "demands AUTH from other providers" in errors[0] and "530" in errors[0], errors


def test_a_run_against_a_target_whose_points_are_down_blocks_instead_of_failing(tmp_path, pki):
    pki_dir, tls = pki
    fake = FakeTarget(tmp_path / "fake", "relay", tls).start()
    fake.stop()
    (fake.folder / "target.toml").write_text(fake.profile(pki_dir))
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--quiet", "--target",
                           str(fake.folder / "target.toml"), "--counterpart-pki", str(pki_dir),
                           "--timeout-multiplier", "0.1", "--out", str(tmp_path / "out"), "--scenario", "acceptance.*",
                           "--scenario", "incoming.*"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **fake.environment()))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    import json

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
    assert verdicts.pop("preflight") == "ERROR"
    assert set(verdicts.values()) <= {"BLOCKED", "SKIP"}, verdicts
    assert "FAIL" not in {f["verdict"] for s in report["scenarios"] for f in s["findings"]}


# ------------------------------------------------------------------------------------------ profile


def _profile(tmp_path, extra: str) -> object:
    boxes = tmp_path / "box"
    for sub in ("new", "cur", "tmp"):
        (boxes / sub).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "p.toml"
    path.write_text(f'''name = "X"
domains = ["x.test"]
[access]
host = "127.0.0.1"
port = 1
[incoming]
host = "127.0.0.1"
port = 2
[[mailboxes]]
address = "a@x.test"
url = "maildir://{boxes}"
{extra}
[[mailboxes]]
address = "b@x.test"
url = "maildir://{boxes}"
''')
    return load_profile(path)


def test_a_mailbox_may_log_in_with_its_own_name(tmp_path):
    p = _profile(tmp_path, 'username = "utente-a"')
    assert p.mailboxes[0].login == "utente-a"
    assert p.mailboxes[1].login == "b@x.test"  # the address, by default
    with pytest.raises(ProfileError, match="username"):
        _profile(tmp_path, 'username = ""')


# ------------------------------------------------------------------------------ judging refusals


def _ctx() -> ScenarioContext:
    spec = Scenario("unit.refusal", "unit", "t", "s", ("ACC-08",), lambda c: None)
    return ScenarioContext(SimpleNamespace(), spec)  # the SMTP branches touch nothing of the world


ACCEPTED = Control(SubmitOutcome(250, "ok"), True, "accepted")


@pytest.mark.parametrize(("code", "text", "control", "cause", "verdict"), [
    (554, "5.7.1 message refused", ACCEPTED, None, "PASS"),
    (554, "5.7.1 virus found", ACCEPTED, "virus", "PASS"),
    (554, "unhandled charset", ACCEPTED, "virus", "BLOCKED"),  # refused, but for something else
    (451, "4.3.0 try later", ACCEPTED, None, "FAIL"),  # deferred is not refused
    (535, "5.7.8 bad credentials", ACCEPTED, None, "BLOCKED"),  # the login, not the message
    (454, "4.7.0 temporary authentication failure", ACCEPTED, None, "BLOCKED"),
    (554, "5.7.1 message refused", Control(SubmitOutcome(554, "no"), False, "refused too"), None, "BLOCKED"),
    (554, "5.7.1 message refused", None, None, "BLOCKED"),  # no control at all
])
def test_a_refusal_counts_only_for_the_defect_against_an_accepted_control(code, text, control, cause, verdict):
    ctx = _ctx()
    got = ctx.judge_refusal("ACC-08", SubmitOutcome(code, text), control, cause=cause)
    assert got == verdict
    assert [str(f.verdict) for f in ctx.findings] == [verdict]
    assert ctx.findings[0].requirements == ("ACC-08",)


def test_an_smtp_refusal_where_a_notice_is_due_is_a_warning():
    ctx = _ctx()
    assert ctx.judge_refusal("ACC-08", SubmitOutcome(550, "5.7.1 Bcc not allowed"), ACCEPTED, cause="recipient",
                             smtp_refusal="WARN", decision="D30") == "WARN"
    assert ctx.findings[0].decision == "D30"


def test_named_causes():
    assert named_causes("554 unhandled charset") == {"charset"}
    assert named_causes("550 5.7.1 message refused") == set()
    assert "virus" in named_causes("554 5.7.1 Infected: EICAR test")


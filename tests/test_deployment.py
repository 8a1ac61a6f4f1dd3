"""A deployment-shaped run: the reference provider as its own process (`reference serve --config`, from the
files `reference init --for` writes), a real Dovecot serving its users' Maildirs over IMAPS and POP3S, the
counterpart's signed index, CA and CRL loaded from the `target init` kit as an operator would load them,
the counterpart's and the ordinary domain routed to the suite. The suite reaches it with `--target` and
`--counterpart-pki` only, and its verdicts equal the built-in run's, requirement by requirement
(`pec-conformance diff`), for every scenario the profile's capabilities allow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dovecot import DovecotUnavailable, free_ports, start_dovecot

from conformance.targetkit import render_profile, slug, write_kit

CLI = [sys.executable, "-m", "conformance.cli"]
NAME, DOMAIN = "Gestore Esempio S.p.A.", "pec.esempio.test"


def not_declared(profile_path: Path) -> list[str]:
    """Scenarios needing a capability the profile does not declare (e.g. IDX-07 and RIC-07: the suite
    publishing the index or the CRL the target reads): SKIP in the deployed run, left out of both runs."""
    from conformance.engine.core import SCENARIOS
    from conformance.engine.profile import load_profile
    from conformance.scenarios import __name__ as _registered  # noqa: F401

    declared = load_profile(profile_path).capabilities
    return sorted(s.id for s in SCENARIOS.values() if any(not declared.get(n) for n in s.needs))


def deployment_profile(ports: dict[str, int], mailboxes: list[str]) -> str:
    """The `target init` profile, filled in for this deployment: its ports, Dovecot's mailboxes, the CA
    bundle of the provider's TLS (its own CA and Dovecot's)."""
    text = render_profile(NAME, DOMAIN)
    for old, new in (("port = 2587", f"port = {ports['access']}"), ("port = 2525", f"port = {ports['incoming']}"),
                     ("port = 2626", f"port = {ports['counterpart']}"), ("port = 2627", f"port = {ports['ordinary']}"),
                     ('ca = "../sandbox/pki/ca/ca.pem"', 'ca = "target-ca.pem"')):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    urls = iter(mailboxes)
    text, n = re.subn(r'^url = "maildir://[^"]*"$', lambda _m: f'url = "{next(urls)}"', text, flags=re.M)
    assert n == len(mailboxes)
    return text


def cli(*args: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def verdict_changes(diff: dict) -> list[dict]:
    """Every scenario or requirement of a `diff --json` whose verdict differs. Single findings are not compared:
    which receipt a scenario happened to catch on top of the ones it waits for depends on timing."""
    out = []
    for category in ("regressions", "fixes", "changed", "new", "removed"):
        out += [dict(item, category=category) for item in diff[category]
                if item["kind"] in ("scenario", "requirement") and item["old"] != item["new"]]
    return out


def failures(out: Path) -> str:
    """What a failed run got wrong, for the assertion message (the folder is removed afterwards)."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return f"\n(no report: {exc})"
    lines = []
    for sc in report["scenarios"]:
        for f in sc["findings"]:
            if f["verdict"] in ("FAIL", "ERROR"):
                lines.append(f"{sc['id']}: {f['verdict']} {','.join(f['requirements'])} {f['message']} "
                             f"[expected {f.get('expected')}; actual {f.get('actual')}]")
    return "\n" + "\n".join(lines)


@pytest.mark.dovecot
def test_a_deployed_provider_behind_dovecot_gets_the_built_in_verdicts():
    # Dovecot's mail processes run as an unprivileged user: the tree must be reachable, not under pytest's tmp.
    base = Path(tempfile.mkdtemp(prefix="pec-deployment-"))
    os.chmod(base, 0o755)
    serve: subprocess.Popen | None = None
    dovecot = None
    try:
        kit = write_kit(base / "kit")
        access, incoming, counterpart, ordinary = free_ports(4)
        ports = {"access": access, "incoming": incoming, "counterpart": counterpart, "ordinary": ordinary}
        users = {f"utente{i}@{DOMAIN}": f"deploy-secret-{i}" for i in (1, 2, 3)}
        env = dict(os.environ, **{f"PEC_USER{i}_PASSWORD": users[f"utente{i}@{DOMAIN}"] for i in (1, 2, 3)})
        placeholder = [f"maildir://../sandbox/x/{a}" for a in users]
        kit.profile.write_text(deployment_profile(ports, placeholder))
        (kit.directory / "target-ca.pem").write_text("")  # the bundle is made once both CAs exist

        done = cli("reference", "init", "sandbox", "--for", "kit/profile.toml", "--counterpart-pki", "kit/pki",
                   cwd=base, env=env)
        assert done.returncode == 0, done.stderr
        config = base / "sandbox" / f"{slug(NAME)}.toml"
        # The provider as its own process, from its own files.
        ready = base / "sandbox" / "ready"
        serve = subprocess.Popen([*CLI, "reference", "serve", "--config", str(config), "--ready-file", str(ready)],
                                 cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
        end = time.monotonic() + 30
        while not ready.exists():
            assert serve.poll() is None, serve.stderr.read().decode(errors="replace")[-3000:]
            assert time.monotonic() < end, "the provider did not start within 30 s"
            time.sleep(0.1)
        # Dovecot over the provider's Maildirs, as the provider's users' IMAP and POP3 server.
        root = base / "sandbox" / f"{slug(NAME)}-data" / "maildir"
        for parent in (base / "sandbox", root.parent, root):
            os.chmod(parent, 0o755)
        try:
            dovecot = start_dovecot(users, mail_root=root)
        except DovecotUnavailable as exc:
            pytest.fail(f"{exc} (run scripts/setup-dovecot)", pytrace=False)
        h = dovecot.host
        mailboxes = [f"imaps://utente1%40{DOMAIN}@{h}:{dovecot.imaps_port}/INBOX",
                     f"pop3s://utente2%40{DOMAIN}@{h}:{dovecot.pop3s_port}",
                     f"imaps://utente3%40{DOMAIN}@{h}:{dovecot.imaps_port}/INBOX"]
        kit.profile.write_text(deployment_profile(ports, mailboxes))
        (kit.directory / "target-ca.pem").write_bytes((base / "sandbox/pki/ca/ca.pem").read_bytes() + dovecot.ca_pem)

        excluded = not_declared(kit.profile)
        assert "formal.index-refresh" in excluded and "delivery.completa" not in excluded
        skip = [a for s in excluded for a in ("--exclude", s)]
        started = time.monotonic()
        deployed = cli("run", "--target", "kit/profile.toml", "--counterpart-pki", "kit/pki", "--out", "deployed",
                       "--quiet", *skip, cwd=base, env=env)
        wall = time.monotonic() - started
        print(f"\ndeployment-shaped run: {wall:.1f} s wall time")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr + failures(base / "deployed")
        builtin = cli("run", "--out", "builtin", "--quiet", *skip, cwd=base, env=env)
        assert builtin.returncode == 0, builtin.stdout + builtin.stderr + failures(base / "builtin")

        compared = cli("diff", "builtin/report.json", "deployed/report.json", "--json", cwd=base, env=env)
        diff = json.loads(compared.stdout)
        assert verdict_changes(diff) == [], json.dumps(verdict_changes(diff), indent=1)[:4000]
        assert not diff["regressions"] and not diff["fixes"]
        report = json.loads((base / "deployed/report.json").read_text())
        assert report["target"]["kind"] == "profile"
        verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
        assert len(verdicts) >= 60 and set(verdicts.values()) == {"PASS"}, verdicts
        # The mailboxes were read through Dovecot: its log shows the suite's logins over both protocols.
        log = dovecot.log_text()
        assert re.search(rf"imap-login:.*Login: user=<utente1@{DOMAIN}>", log), log[-2000:]
        assert re.search(rf"pop3-login:.*Login: user=<utente2@{DOMAIN}>", log), log[-2000:]
        assert serve.poll() is None, "the provider stayed up through the run"
    finally:
        if serve is not None and serve.poll() is None:
            serve.terminate()
            try:
                serve.wait(timeout=20)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait(timeout=10)
        if dovecot is not None:
            dovecot.stop()
        shutil.rmtree(base, ignore_errors=True)

"""Secrets stay out: whatever a target sends back is scrubbed of the profile's passwords, in every form,
before it reaches the evidence folder or a report.

End to end, `pec-conformance run --target` against targets that echo the credentials they were sent:
the access point in every SMTP reply (or in its 535 refusal), the IMAP and POP3 servers in their login
replies, in a refused login and in the messages they hand out. Every file of the output folder
(evidence included, compressed blobs opened) and the run's stdout and stderr are searched for the
password raw, as the AUTH LOGIN and AUTH PLAIN base64 blobs and URL-encoded.
"""

from __future__ import annotations

import base64
import gzip
import os
import random
from pathlib import Path

import pytest
from hostile_targets import USERS, Harness, imap_server, password_forms, pop3_server, smtp_access

from conformance import redact

pytestmark = pytest.mark.timeout(120)

SCENARIOS = ["acceptance.single", "delivery.same-provider"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    h = Harness.create(tmp_path_factory.mktemp("secrets"))
    yield h
    h.close()


def _files(folder: Path):
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            data = path.read_bytes()
            yield path, gzip.decompress(data) if name.endswith(".gz") else data


def _assert_no_password(done) -> None:
    forms = password_forms()
    seen = 0
    for path, data in _files(done.out):
        seen += 1
        for what, form in forms.items():
            assert form.encode() not in data, f"{what} form of the password in {path.relative_to(done.out)}"
    assert seen >= 4, "the run wrote almost nothing"
    for what, form in forms.items():
        assert form not in done.stdout and form not in done.stderr, f"{what} form in the run's output"


def _masked_in(done, folder: str = "evidence") -> bool:
    return any(redact.MASK.encode() in data for _, data in _files(done.out / folder))


def _urls(scheme: str, port: int) -> list[str]:
    folder = "/INBOX" if scheme == "imaps" else ""
    return [f"{scheme}://{u.replace('@', '%40')}@127.0.0.1:{port}{folder}" for u in USERS]


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_echoed_credentials_never_reach_an_output_file(harness, scheme):
    received: list[bytes] = []
    access = harness.serve(smtp_access("echo", harness.tls, received))
    server = imap_server if scheme == "imaps" else pop3_server
    mailbox = harness.serve(server("echo", received), tls=True)
    profile = harness.profile(f"echo-{scheme}", access, _urls(scheme, mailbox))
    done = harness.run(profile, SCENARIOS, multiplier=0.1, limit=60, preflight=False)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 2), done.stdout + done.stderr[-2000:]
    assert received, "the access point was never given a message: the echo paths were not exercised"
    _assert_no_password(done)
    # The echoes did happen and were masked: in the SMTP transcripts, in the message fetched from the
    # mailbox (evidence) and in the refused login of the second mailbox (report).
    assert _masked_in(done)
    report = (done.out / "report.json").read_text(encoding="utf-8")
    assert "mailbox giulia@evil.test" in report and redact.MASK in report


def test_a_refusal_quoting_the_password_is_reported_without_it(harness):
    """`535 5.7.8 Wrong password <password>`: the case that reached report.json, report.html and junit.xml."""

    def refuse(c):
        c.send(b"220 evil.test ESMTP\r\n")
        echo = " ".join(password_forms().values()).encode()
        while line := c.readline():
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                c.send(b"250-evil.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
            elif cmd == b"STAR":
                c.send(b"220 go ahead\r\n")
                c.starttls(harness.tls)
            elif cmd == b"AUTH":
                c.send(b"535 5.7.8 Wrong password " + line.split()[-1] + b" " + echo + b"\r\n")
            elif cmd == b"QUIT":
                c.send(b"221 bye\r\n")
                return
            else:
                c.send(b"250 ok\r\n")

    access = harness.serve(refuse)
    profile = harness.profile("echo-535", access, harness.maildirs())
    done = harness.run(profile, SCENARIOS, multiplier=0.1, limit=60)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 2)
    _assert_no_password(done)
    for name in ("report.json", "report.html", "junit.xml", "summary.md"):
        assert (done.out / name).is_file()
    assert "535 5.7.8 Wrong password" in (done.out / "report.json").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------- the scrubber


def test_every_form_is_scrubbed():
    secret, user = "Tr0ub4dor&3 horse/battery+staple", "utente@pec.esempio.test"
    redact.register(secret, user)
    for form in password_forms(secret, (user,)).values():
        assert redact.scrub_text(f"535 5.7.8 <{form}>") == f"535 5.7.8 <{redact.MASK}>"
        assert redact.scrub_bytes(b"x " + form.encode() + b" y") == b"x " + redact.MASK.encode() + b" y"
    assert redact.scrub_text('a1 LOGIN user "Tr0ub4dor&3 horse/battery+staple"') == f"a1 LOGIN user {redact.MASK}"


def test_the_password_inside_any_base64_text_is_scrubbed():
    """A server may base64 a longer text holding the password (a login line, a whole reply): at each of
    the three byte alignments the stretch of base64 that carries it is found."""
    secret = "quattro-gatti-sul-tetto"
    redact.register(secret, "x@example.test")
    rng = random.Random(7)
    for _ in range(300):
        text = rng.randbytes(rng.randrange(0, 40)) + secret.encode() + rng.randbytes(rng.randrange(0, 40))
        encoded = base64.b64encode(text).decode()
        scrubbed = redact.scrub_text(encoded)
        assert redact.MASK in scrubbed
        longest_left = max(len(p) for p in scrubbed.split(redact.MASK))
        assert longest_left < len(encoded) - len(secret)  # nothing like the password's stretch survives


def test_short_values_are_not_hunted_and_ordinary_text_is_untouched():
    redact.register("abc", "u@example.test")  # too short to hunt without scrubbing ordinary words
    assert redact.scrub_text("abc abcdef") == "abc abcdef"
    tree = {"message": "no password here", "list": ["quattro-gatti-sul-tetto", 3, None]}
    redact.register("quattro-gatti-sul-tetto")
    assert redact.scrub_tree(tree) == {"message": "no password here", "list": [redact.MASK, 3, None]}

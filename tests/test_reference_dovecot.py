"""A real Dovecot over the reference provider's own Maildir: what the delivery point wrote is read
back byte for byte through the suite's IMAP and POP3 readers (the readers the run will use)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from dovecot import DovecotUnavailable, start_dovecot
from refharness import BETA_USER, FAST_TIMERS, deploy
from test_reference_flows import original

from conformance.net.mailbox import ImapReader, open_mailbox
from conformance.pec.constants import Kind
from conformance.pec.parse import parse_message


@pytest.mark.dovecot
def test_dovecot_serves_the_reference_providers_maildir():
    # Dovecot's mail processes run as an unprivileged user: the tree must be reachable, not under pytest's tmp.
    base = Path(tempfile.mkdtemp(prefix="pec-ref-dovecot-"))
    os.chmod(base, 0o755)
    d = deploy(base, timers=FAST_TIMERS)
    try:
        assert d.submit(original(BETA_USER, subject="Letta via IMAP"), [BETA_USER]) == "250"
        assert d.submit(original(BETA_USER, tipo="breve", subject="Letta via POP3"), [BETA_USER]) == "250"
        envelopes = d.wait_kind(d.beta, BETA_USER, Kind.BUSTA_TRASPORTO, count=2)
        assert len(envelopes) == 2
        d.idle()
    finally:
        d.stop()
    written = d.mailbox(d.beta, BETA_USER)
    root = d.beta.config.data_dir / "maildir"
    for parent in (root.parent, root):
        os.chmod(parent, 0o755)
    try:
        server = start_dovecot({BETA_USER: "beta-secret-1"}, mail_root=root)
    except DovecotUnavailable as exc:
        pytest.fail(f"{exc} (run scripts/setup-dovecot)", pytrace=False)
    with server:
        context = server.client_context()
        with ImapReader(server.host, server.imaps_port, BETA_USER, "beta-secret-1", tls="implicit",
                        ssl_context=context, timeout=5) as imap:
            via_imap = [m.raw for m in imap.fetch_all()]
        with open_mailbox(f"pop3s://{BETA_USER}@{server.host}:{server.pop3s_port}", "beta-secret-1",
                          ssl_context=context, timeout=5) as pop3:
            via_pop3 = [m.raw for m in pop3.fetch_all()]
    assert sorted(via_imap) == sorted(written) == sorted(via_pop3)
    for raw in via_imap:
        msg = parse_message(raw)
        assert msg.kind is Kind.BUSTA_TRASPORTO
        assert msg.signature.verification.ok and not msg.signature.canonicalised

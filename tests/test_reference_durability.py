"""Nothing is lost when the provider is killed: SIGKILL and restart with a timer pending, with a
submission just acknowledged, and between sending a notice and recording it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from refharness import ALFA_PASSWORD, ALFA_USER, SILENT_USER, Sink, silent_plan
from test_reference_flows import original

from conformance.pec.constants import Kind
from conformance.pec.parse import parse_message
from conformance.reference.config import load_config
from conformance.reference.deploy import DEFAULT_PLANS, write_deployment
from conformance.reference.provider import ReferenceProvider

TIMERS = {"preavviso": 3.0, "timeout": 6.0, "window_start": 5.0, "scheduler_interval": 0.1, "retry_interval": 0.3}


def _serve(config: Path, ready: Path) -> subprocess.Popen:
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "reference", "serve", "--config", str(config),
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"provider did not start: {proc.stdout.read().decode(errors='replace')}")
        time.sleep(0.05)
    return proc


def _mailbox(config, user: str) -> list[bytes]:
    base = config.data_dir / "maildir" / user
    return [p.read_bytes() for sub in ("new", "cur") if (base / sub).is_dir() for p in sorted((base / sub).iterdir())]


def _kinds(config, user):
    return [parse_message(m) for m in _mailbox(config, user)]


def _wait(predicate, deadline: float):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


@pytest.fixture()
def world(tmp_path):
    plans = [DEFAULT_PLANS[0], DEFAULT_PLANS[1], silent_plan()]
    paths = write_deployment(tmp_path, plans, timers=TIMERS)
    alfa_cfg = load_config(paths[0])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(tmp_path / "pki/tls/cert.pem"), str(tmp_path / "pki/tls/key.pem"))
    sink = Sink(tls, port=alfa_cfg.routes["pec.silente.test"][1]).start()
    yield tmp_path, paths[0], alfa_cfg, sink
    sink.stop()


def _submit(cfg, ca: Path, subject: str) -> None:
    import smtplib

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with smtplib.SMTP(*cfg.access, timeout=15) as s:
        s.starttls(context=ctx)
        s.login(ALFA_USER, ALFA_PASSWORD)
        s.sendmail(ALFA_USER, [SILENT_USER], original(SILENT_USER, subject=subject))


def test_sigkill_with_a_pending_timer_then_restart_still_sends_the_notices(world):
    directory, config_path, cfg, sink = world
    ready = directory / "ready"
    proc = _serve(config_path, ready)
    try:
        _submit(cfg, directory / "pki/ca/ca.pem", "Timer pendente")
        assert _wait(lambda: sink.messages, 10), "the envelope never reached the silent provider"
        os.kill(proc.pid, signal.SIGKILL)  # timers pending: the 12 h notice is due at 3 s
        proc.wait(10)
        assert not [m for m in _kinds(cfg, ALFA_USER) if m.kind is Kind.PREAVVISO_12H]
        proc = _serve(config_path, ready)
        got = _wait(lambda: [m for m in _kinds(cfg, ALFA_USER) if m.kind is Kind.MANCATA_CONSEGNA_24H], 15)
        assert got, "the 24 h notice was lost across the restart"
    finally:
        proc.terminate()
        proc.wait(10)
    notices = _kinds(cfg, ALFA_USER)
    preavvisi = [m for m in notices if m.kind is Kind.PREAVVISO_12H]
    finals = [m for m in notices if m.kind is Kind.MANCATA_CONSEGNA_24H]
    assert len(preavvisi) == 1 and len(finals) == 1
    assert proc.returncode == 0  # SIGTERM: clean shutdown


def test_sigkill_right_after_250_loses_nothing(world):
    directory, config_path, cfg, sink = world
    ready = directory / "ready"
    proc = _serve(config_path, ready)
    try:
        _submit(cfg, directory / "pki/ca/ca.pem", "Appena accettato")
        os.kill(proc.pid, signal.SIGKILL)  # right after the 250
        proc.wait(10)
        proc = _serve(config_path, ready)
        assert _wait(lambda: [m for m in _kinds(cfg, ALFA_USER) if m.kind is Kind.ACCETTAZIONE], 10)
        assert _wait(lambda: sink.messages, 10), "the envelope was lost"
    finally:
        proc.terminate()
        proc.wait(10)
    envelopes = [parse_message(raw) for _, _, raw in sink.messages]
    assert {m.kind for m in envelopes} == {Kind.BUSTA_TRASPORTO}
    assert len({m.header("message-id") for m in envelopes}) == 1  # a re-send is the same message


def test_crash_between_sending_and_recording_repeats_the_same_message_id(world):
    """Intent first: the notice is in the outbox before it is sent; a crash after sending but before
    recording re-sends the very same bytes (same Message-ID), never a different notice."""
    directory, config_path, cfg, sink = world
    p = ReferenceProvider(cfg)
    p.start()
    try:
        _submit(cfg, directory / "pki/ca/ca.pem", "Doppio invio")
        assert _wait(lambda: sink.messages, 10)
    finally:
        p.stop()
    # Simulate: timer due, notice written to the outbox (intent), delivered, then the process dies.
    p = ReferenceProvider(cfg)
    assert p.tracker.tick(time.time() + 3.5) == 1
    item = p.store.due(time.time())[0]
    p.local_delivery(item.mail_from, item.rcpts, item.data)  # sent, but mark_sent never happens
    p.store.close()
    p = ReferenceProvider(cfg)
    p.start()
    try:
        assert _wait(lambda: p.store.pending_count() == 0, 10)
    finally:
        p.stop()
    preavvisi = [m for m in _kinds(cfg, ALFA_USER) if m.kind is Kind.PREAVVISO_12H]
    assert len(preavvisi) == 2
    assert len({m.header("message-id") for m in preavvisi}) == 1

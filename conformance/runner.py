"""`pec-conformance run`: set the world up (the built-in reference provider or a profile's target,
the counterpart, the ordinary domain), run the scenarios, write the reports.

This module sits at the top of the layers: it is the one place that may start the reference provider
next to the engine.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .checks.findings import ValidationContext
from .counterpart import Counterpart, OrdinaryDomain
from .engine import core
from .engine.evidence import EvidenceStore
from .engine.profile import Mailbox, ProfileError, TargetProfile
from .pec import index as pec_index
from .pec.pki import load_forgery_material, load_pki_directory, write_forgery_material

TARGET_NAME = "Gestore Riferimento S.p.A."
TARGET_DOMAINS = ("pec.riferimento.test",)
TARGET_USERS = {
    "mario.rossi@pec.riferimento.test": "rif-secret-1",
    "giulia.neri@pec.riferimento.test": "rif-secret-2",
    "paolo.bruni@pec.riferimento.test": "rif-secret-3",
}
FULL_MAILBOX = ("casella.piena@pec.riferimento.test", "rif-secret-4")  # over quota: NOT-03
COUNTERPART_NAME = "Gestore Controparte S.p.A."
COUNTERPART_DOMAINS = ("pec.controparte.test",)
COUNTERPART_USERS = ["anna.bianchi@pec.controparte.test", "luigi.verdi@pec.controparte.test",
                     "carla.gialli@pec.controparte.test"]
ORDINARY_DOMAIN = "esterno.test"
ORDINARY_USERS = ["carlo.neri@esterno.test", "marta.blu@esterno.test"]
# The built-in target's timers, scaled from hours to seconds (12 h -> 3 s, 22 h -> 4.5 s, 24 h -> 6 s):
# long enough that receipts under a loaded 2-core machine still come "in time", short enough for a quick run.
SCALED_TIMERS = {"preavviso": 3.0, "timeout": 6.0, "window_start": 4.5, "scheduler_interval": 0.1,
                 "retry_interval": 0.3}


@dataclass
class Stage:
    world: core.World
    stop: callable


def _tls_server(directory: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(directory / "pki/tls/cert.pem"), str(directory / "pki/tls/key.pem"))
    return ctx


def _client_tls(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.check_hostname = False  # loopback endpoints are addresses; the chain is still verified
    return ctx


@contextlib.contextmanager
def builtin_target(out: Path, faults: list[str], multiplier: float) -> Iterator[core.World]:
    """The reference provider on loopback (ephemeral ports, a temporary folder, timers in seconds), a
    counterpart provider and an ordinary mail domain, all sharing one test PKI and providers index."""
    from .reference.config import load_config
    from .reference.deploy import ProviderPlan, publish_index, write_deployment
    from .reference.provider import ReferenceProvider
    from .targetkit import slug

    work = Path(tempfile.mkdtemp(prefix="pec-run-"))
    started: list = []
    try:
        evidence = EvidenceStore(out)
        plans = [ProviderPlan(TARGET_NAME, TARGET_DOMAINS, {**TARGET_USERS, FULL_MAILBOX[0]: FULL_MAILBOX[1]},
                              list(faults), {FULL_MAILBOX[0]: 1}),
                 ProviderPlan(COUNTERPART_NAME, COUNTERPART_DOMAINS, dict.fromkeys(COUNTERPART_USERS, "x"))]
        ordinary = OrdinaryDomain((ORDINARY_DOMAIN,), evidence=_hook(evidence, "_ordinary")).start()
        started.append(ordinary)
        paths = write_deployment(work, plans, timers=SCALED_TIMERS, external_route=ordinary.address)
        layout = load_pki_directory(work / "pki")
        forgery = write_forgery_material(work / "pki", layout, COUNTERPART_NAME)
        layout = load_pki_directory(work / "pki")
        counterpart = Counterpart.from_layout(layout, COUNTERPART_NAME, tls_context=_tls_server(work),
                                              evidence=_hook(evidence, "_counterpart"), users=COUNTERPART_USERS)
        counterpart.start()
        started.append(counterpart)
        config = load_config(paths[0])
        config.routes[COUNTERPART_DOMAINS[0]] = counterpart.address
        # Declared limits at the decree's floors, so the oversize scenario stays small (decision D17).
        config.limits.max_total_size = 30_000_000
        config.limits.max_message_size = 32_000_000
        # The idle limit of TMO-01 and the daily index refresh of IDX-07, scaled like the other timers.
        config.timers.give_up_after = SCALED_TIMERS["timeout"]
        config.index_refresh = SCALED_TIMERS["timeout"]
        provider = ReferenceProvider(config, faults)
        provider.start()
        started.append(provider)
        counterpart.target_incoming = provider.incoming_address
        ordinary.target_incoming = provider.incoming_address
        ordinary.client_tls = _client_tls(work / "pki/ca/ca.pem")  # it may use STARTTLS towards the target
        maildir = config.data_dir / "maildir"
        profile = TargetProfile(
            name=TARGET_NAME, domains=list(TARGET_DOMAINS), service_address=config.service_address,
            receipt_mailbox=config.receipt_mailbox, access=provider.access_address, access_tls="starttls",
            incoming=provider.incoming_address,
            mailboxes=[Mailbox(a, f"maildir://{maildir / a}", password=p) for a, p in TARGET_USERS.items()],
            timers={k: SCALED_TIMERS[k] for k in ("preavviso", "timeout", "window_start")},
            capabilities={"ordinary_mail": config.ordinary_mail, "sender_mismatch": "smtp",
                          "max_recipients": config.limits.max_recipients,
                          "max_total_size": config.limits.max_total_size,
                          "max_message_size": config.limits.max_message_size, "timers": True,
                          "full_mailbox": FULL_MAILBOX[0], "index_refresh": config.index_refresh,
                          "crl_refresh": config.index_refresh,
                          "receipt_types": ["completa", "breve", "sintetica"]},
            ca_file=work / "pki/ca/ca.pem", kind="reference",
            # Its published index (signed LDIF, with the index faults switched on) and its signing certificate.
            published_index=publish_index(work / "pki", TARGET_NAME, faults),
            published_index_signer=work / "pki/index/index-signer.pem",
            signing_certificate=work / "pki/providers" / slug(TARGET_NAME) / "cert.pem")
        world = core.World(
            profile=profile, counterpart=counterpart, ordinary=ordinary, counterpart_users=list(COUNTERPART_USERS),
            ordinary_users=list(ORDINARY_USERS),
            validation=ValidationContext(index=layout.index, ca_certificates=[layout.ca.certificate],
                                         crls=[layout.crl]),
            evidence=evidence, client_tls=_client_tls(work / "pki/ca/ca.pem"), multiplier=multiplier,
            forgery=_forgery_keys(forgery), counterpart_credentials=layout.provider(COUNTERPART_NAME),
            republish_index=lambda records: _republish(layout, records))
        # Revocation during the run (RIC-07): the CRL the built-in target reloads, re-signed by the test CA.
        world.revoke_certificate = lambda cert: _revoke(work / "pki", world, cert)
        yield world
    finally:
        for item in reversed(started):
            with contextlib.suppress(Exception):
                item.stop()
        shutil.rmtree(work, ignore_errors=True)


def _load_forgery(pki_dir: Path, name: str) -> dict:
    try:
        return load_forgery_material(pki_dir, name)
    except (KeyError, OSError):
        return {}  # written with --no-forgery: the forged-certificate scenarios SKIP


def _republish(layout, records) -> None:
    """Write and sign a new providers index where the built-in target reloads it from."""
    ldif = pec_index.write_ldif(records)
    p7m = pec_index.sign_index(ldif, layout.index_signer_key, layout.index_signer_certificate)
    for name, data in (("providers.ldif", ldif), ("providers.ldif.p7m", p7m)):
        tmp = layout.directory / "index" / f".{name}.new"
        tmp.write_bytes(data)
        tmp.replace(layout.directory / "index" / name)  # atomic: the target never reads half a file


def _revoke(pki_dir: Path, world: core.World, certificate) -> None:
    """Put `certificate` on the CRL in `pki_dir` (where the target reloads it from); the suite judges with it too."""
    from cryptography import x509

    from .pec.pki import revoke_in_directory

    revoke_in_directory(pki_dir, certificate.serial_number)
    world.validation.crls = [x509.load_pem_x509_crl((pki_dir / "ca/crl.pem").read_bytes())]


def _forgery_keys(paths: dict[str, Path]) -> dict[str, tuple]:
    from cryptography import x509

    keys = {}
    for name, folder in paths.items():
        if name in ("crl", "manifest") or not Path(folder).is_dir():
            continue
        key = serialization.load_pem_private_key((Path(folder) / "key.pem").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((Path(folder) / "cert.pem").read_bytes())
        keys[name] = (key, cert)
    return keys


def _hook(evidence: EvidenceStore, folder: str):
    """Everything the counterpart or the ordinary domain receives is on disk before it answers 250."""
    def write(direction: str, raw: bytes, meta: dict) -> None:
        evidence.write(folder, direction, str(meta.get("kind") or meta.get("point") or "message"), raw)
    return write


@contextlib.contextmanager
def profile_target(profile: TargetProfile, out: Path, multiplier: float, pki_dir: Path) -> Iterator[core.World]:
    """A real deployment: the counterpart uses a provider of `pki_dir` (written by `pki init`, whose index
    and CA the target's operator loaded); the target's own index record comes from its certificate."""
    try:
        layout, index, cas, crls = _profile_trust(profile, pki_dir)
    except (OSError, ValueError, KeyError) as exc:  # unreadable or malformed files: a usage error, not a crash
        raise ProfileError(f"{exc}") from None
    creds = layout.providers[0]
    evidence = EvidenceStore(out)
    tls = _tls_server(pki_dir.parent) if (pki_dir.parent / "pki/tls/cert.pem").exists() else None
    host, port = profile.counterpart_listen
    counterpart = Counterpart(creds, index=index, ca_certificates=cas, crls=crls, tls_context=tls,
                              target_incoming=profile.incoming, host=host, port=port,
                              evidence=_hook(evidence, "_counterpart"))
    ordinary = OrdinaryDomain((profile.ordinary_domain,), target_incoming=profile.incoming,
                              host=profile.ordinary_listen[0], port=profile.ordinary_listen[1],
                              evidence=_hook(evidence, "_ordinary"))
    counterpart.start()
    ordinary.start()
    try:
        yield core.World(
            profile=profile, counterpart=counterpart, ordinary=ordinary,
            counterpart_users=[f"utente{i}@{creds.domains[0]}" for i in (1, 2, 3)],
            ordinary_users=[f"utente{i}@{profile.ordinary_domain}" for i in (1, 2)],
            validation=ValidationContext(index=index, ca_certificates=cas, crls=crls), evidence=evidence,
            client_tls=_client_tls(profile.ca_file), multiplier=multiplier, counterpart_credentials=creds,
            forgery=_load_forgery(pki_dir, creds.provider_name))
    finally:
        counterpart.stop()
        ordinary.stop()


def _profile_trust(profile: TargetProfile, pki_dir: Path):
    """The counterpart's PKI, the providers index the suite judges with (the counterpart's records plus the
    target's: from its published index when the profile names one, else built from its certificate) and the CAs."""
    from cryptography import x509

    from .targetkit import target_records

    try:
        layout = load_pki_directory(pki_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ProfileError(f"{pki_dir}: not a `pki init` folder ({exc})") from None
    if not layout.providers:
        raise ProfileError(f"{pki_dir}: no provider to play the counterpart")
    records = list(layout.index.records) + target_records(profile)
    cas = [layout.ca.certificate]
    if profile.ca_file is not None:
        try:
            cas += x509.load_pem_x509_certificates(profile.ca_file.read_bytes())
        except ValueError as exc:
            raise ProfileError(f"{profile.ca_file}: not a PEM certificate ({exc})") from None
    crls = [layout.crl]
    if profile.crl_file is not None:
        data = profile.crl_file.read_bytes()
        try:
            crls.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
        except ValueError as exc:
            raise ProfileError(f"{profile.crl_file}: not a CRL ({exc})") from None
    return layout, pec_index.ProvidersIndex(records), cas, crls


def builtin_placeholder() -> TargetProfile:
    """What a report says of the built-in target when the run was stopped before it was up."""
    return TargetProfile(name=TARGET_NAME, domains=list(TARGET_DOMAINS), service_address="", receipt_mailbox="",
                         access=("127.0.0.1", 0), access_tls="starttls", incoming=("127.0.0.1", 0), mailboxes=[],
                         timers={}, capabilities={}, kind="reference")


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

"""What a provider needs to point the suite at its own deployment (`pec-conformance target init DIR`):
the counterpart's test PKI, a commented target profile to fill in and a checklist of what to load
into the provider under test. Also the target's side of a profile run: its index records, from the
published index the profile names or from its signing certificate.

The profile written here, with the default names, is `fixtures/target-profile.example.toml` byte for
byte: it describes the local reference sandbox (`reference init sandbox --for PROFILE`), so the
example runs as shipped and a provider changes only the values of its own deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .engine.profile import ProfileError, TargetProfile
from .pec import index as pec_index

DEFAULT_NAME = "Gestore Esempio S.p.A."
DEFAULT_DOMAIN = "pec.esempio.test"
COUNTERPART_NAME = "Gestore Controparte S.p.A."
COUNTERPART_DOMAIN = "pec.controparte.test"
ORDINARY_DOMAIN = "esterno.test"
# The sandbox's ports (fixed, so the example profile names them); a real deployment writes its own.
SANDBOX_ACCESS, SANDBOX_INCOMING, COUNTERPART_PORT, ORDINARY_PORT = 2587, 2525, 2626, 2627
PASSWORD_ENVS = ("PEC_USER1_PASSWORD", "PEC_USER2_PASSWORD", "PEC_USER3_PASSWORD")

PROFILE_TEMPLATE = """\
# Target profile: how the suite reaches the PEC provider under test and what that provider declares
# (JSON Schema: schemas/profile.schema.json). Relative paths are relative to this file. Passwords never
# appear here: each mailbox names the environment variable that holds its password.
#
# As written, it describes the local reference sandbox, a reference provider set up beside this file's
# folder to play the provider under test:
#   pec-conformance reference init sandbox --for THIS_FILE --counterpart-pki KIT/pki
# For your own deployment, change every value marked "yours" (and see CHECKLIST.md).

name = "{name}"                          # yours: providerName, as in your index record
domains = ["{domain}"]                                # yours: the PEC domains it manages
service_address = "posta-certificata@{domain}"        # yours: the From of its envelopes and notices
receipt_mailbox = "ricevute@{domain}"                 # yours: mailReceipt in your index record

[access]                             # yours: the submission endpoint of your users (STARTTLS and AUTH)
host = "127.0.0.1"
port = {access_port}
tls = "starttls"                     # or "implicit" (TLS from the first byte, port 465)

[incoming]                           # yours: where other providers deliver (your MX)
host = "127.0.0.1"
port = {incoming_port}

# yours: three test mailboxes the suite may fill and read, as imaps://USER@HOST:993/INBOX,
# pop3s://USER@HOST:995 or maildir://PATH (USER URL-encoded: utente1%40{domain}).
[[mailboxes]]
address = "utente1@{domain}"
url = "maildir://../sandbox/{slug}-data/maildir/utente1@{domain}"
password_env = "PEC_USER1_PASSWORD"

[[mailboxes]]
address = "utente2@{domain}"
url = "maildir://../sandbox/{slug}-data/maildir/utente2@{domain}"
password_env = "PEC_USER2_PASSWORD"

[[mailboxes]]
address = "utente3@{domain}"
url = "maildir://../sandbox/{slug}-data/maildir/utente3@{domain}"
password_env = "PEC_USER3_PASSWORD"

[trust]                              # yours: public files of your deployment, copied next to this file
ca = "../sandbox/pki/ca/ca.pem"                             # the CA of your TLS and signing certificates
crl = "../sandbox/pki/ca/crl.pem"                           # its CRL
certificate = "../sandbox/pki/providers/{slug}/cert.pem"    # your signing certificate
index = "../sandbox/pki/index/providers.ldif.p7m"           # your published index (signed LDIF)
index_signer = "../sandbox/pki/index/index-signer.pem"      # the certificate that signs it

[counterpart]                        # the suite's PEC provider: route its domain to this address
host = "127.0.0.1"                   # an address of the machine running the suite, reachable by your MTA
port = {counterpart_port}
domain = "{counterpart_domain}"

[ordinary]                           # the suite's ordinary (non-PEC) mail domain: route it here too
host = "127.0.0.1"
port = {ordinary_port}
domain = "{ordinary_domain}"

[timers]                             # yours: seconds; the sandbox runs the 12 h / 22 h / 24 h timers scaled
preavviso = 3
timeout = 6
window_start = 4.5

[capabilities]                       # yours: what your deployment declares
ordinary_mail = "anomaly"            # or "refuse" (decision D15)
sender_mismatch = "smtp"             # or "notice" (decision D14)
max_recipients = 500
max_total_size = 30000000
max_message_size = 32000000
receipt_types = ["completa", "breve", "sintetica"]
timers = true                        # false unless your timers are scaled like these (else: run --long-timers)
full_mailbox = "casella.piena@{domain}"   # a mailbox kept over its quota (NOT-03); remove if you have none
"""

CHECKLIST_TEMPLATE = """\
# Loading the counterpart into the provider under test

The suite plays a second PEC provider, **{counterpart_name}** (`{counterpart_domain}`), and an ordinary
mail domain (`{ordinary_domain}`). Before `pec-conformance run --target profile.toml --counterpart-pki pki`,
the provider under test must know them. Paths are relative to this folder.

1. **Providers index.** Add the counterpart's record to the providers index your deployment reads:
   `pki/index/providers.ldif.p7m` (signed LDIF; verify it with `pki/index/index-signer.pem`), plain
   text in `pki/index/providers.ldif`. It names `{counterpart_domain}` and the counterpart's certificate.
2. **CA.** Trust `pki/ca/ca.pem` for PEC signatures (the counterpart's certificate chains to it) and
   for STARTTLS towards the counterpart.
3. **CRL.** Load `pki/ca/crl.pem`; it lists one revoked counterpart key, used by the forgery scenarios.
4. **Routing.** Deliver mail for `{counterpart_domain}` to the `[counterpart]` address of `profile.toml`
   and mail for `{ordinary_domain}` to its `[ordinary]` address (no DNS: a transport map or smart host).
5. **Test mailboxes.** Create the three mailboxes named in `profile.toml`, reachable over IMAPS,
   POP3S or a Maildir path; export their passwords in the variables the profile names
   ({password_envs}). Optionally one mailbox kept over its quota (`full_mailbox`).
6. **Your public files.** In `profile.toml`, name your CA, your signing certificate, your published
   index (signed LDIF) and its signer; set your endpoints, timers and capabilities.

Then:

    pec-conformance run --target {kit}/profile.toml --counterpart-pki {kit}/pki

For the 12 h and 24 h timers of a deployment that runs them for real, see `run --long-timers` and
`pec-conformance resume`.
"""


def slug(name: str) -> str:
    """The folder name `pki init` and `reference init` give a provider."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "provider"


def render_profile(name: str = DEFAULT_NAME, domain: str = DEFAULT_DOMAIN, *,
                   counterpart_domain: str = COUNTERPART_DOMAIN) -> str:
    return PROFILE_TEMPLATE.format(
        name=name, domain=domain.lower(), slug=slug(name), access_port=SANDBOX_ACCESS,
        incoming_port=SANDBOX_INCOMING, counterpart_port=COUNTERPART_PORT, counterpart_domain=counterpart_domain,
        ordinary_port=ORDINARY_PORT, ordinary_domain=ORDINARY_DOMAIN)


@dataclass
class Kit:
    directory: Path
    profile: Path
    checklist: Path
    pki: Path


def write_kit(directory: Path, *, name: str = DEFAULT_NAME, domain: str = DEFAULT_DOMAIN,
              counterpart_name: str = COUNTERPART_NAME, counterpart_domain: str = COUNTERPART_DOMAIN,
              tls_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Kit:
    """The counterpart's PKI (with its forgery keys), profile.toml and CHECKLIST.md under `directory`."""
    from .pec.pki import (
        ProviderSpec,
        _write,
        issue_tls_server_certificate,
        private_key_pem,
        write_forgery_material,
        write_pki_directory,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pki = directory / "pki"
    layout = write_pki_directory(pki, [ProviderSpec(counterpart_name, (counterpart_domain,))])
    write_forgery_material(pki, layout, counterpart_name)
    # The counterpart's STARTTLS certificate, from the same CA (a run finds it in pki/tls/).
    tls_key, tls_cert = issue_tls_server_certificate(layout.ca, tls_names)
    _write(pki / "tls" / "key.pem", private_key_pem(tls_key), secret=True)
    _write(pki / "tls" / "cert.pem", tls_cert.public_bytes(serialization.Encoding.PEM))
    profile = directory / "profile.toml"
    profile.write_text(render_profile(name, domain, counterpart_domain=counterpart_domain), encoding="utf-8")
    checklist = directory / "CHECKLIST.md"
    checklist.write_text(CHECKLIST_TEMPLATE.format(
        counterpart_name=counterpart_name, counterpart_domain=counterpart_domain, ordinary_domain=ORDINARY_DOMAIN,
        password_envs=", ".join(f"`{e}`" for e in PASSWORD_ENVS), kit=directory), encoding="utf-8")
    return Kit(directory, profile, checklist, pki)


def target_records(profile: TargetProfile) -> list[pec_index.IndexRecord]:
    """The target's records in the index the suite judges with: those of its published index (when the
    profile names one and it reads), else one built from its signing certificate."""
    if profile.published_index is not None:
        try:
            signer = None
            if profile.published_index_signer is not None:
                signer = x509.load_pem_x509_certificate(profile.published_index_signer.read_bytes())
            index, _signed = pec_index.load_index(profile.published_index.read_bytes(), signer)
        except (OSError, ValueError) as exc:
            # Judged by the published-index scenario; the messages are still judged with the certificate.
            index = None
            if profile.signing_certificate is None:
                raise ProfileError(f"{profile.published_index}: {exc}") from None
        if index is not None:
            mine = [r for r in index.records if r.provider_name == profile.name
                    or set(r.managed_domains) & set(profile.domains)]
            if mine:
                return mine
    if profile.signing_certificate is None:
        return []
    der = x509.load_pem_x509_certificate(profile.signing_certificate.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    return [pec_index.IndexRecord(
        dn=pec_index.provider_dn(profile.name), provider_name=profile.name, managed_domains=tuple(profile.domains),
        mail_receipt=profile.receipt_mailbox, certificates=(der,), certificate_hashes=(pec_index.certificate_hash(der),))]

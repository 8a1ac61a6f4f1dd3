"""Target profile: how the suite reaches the provider under test and what that provider declares.

TOML, checked against `schemas/profile.schema.json`. Passwords never appear in the file: each
mailbox names the environment variable that holds its password. Example::

    name = "Gestore Esempio S.p.A."
    domains = ["pec.esempio.it"]
    service_address = "posta-certificata@pec.esempio.it"
    receipt_mailbox = "ricevute@pec.esempio.it"

    [access]                       # submission: STARTTLS (or implicit TLS) and AUTH
    host = "smtp.pec.esempio.it"
    port = 587
    tls = "starttls"

    [incoming]                     # where other providers deliver
    host = "mx.pec.esempio.it"
    port = 25

    [[mailboxes]]
    address = "utente1@pec.esempio.it"
    password_env = "PEC_UTENTE1_PASSWORD"
    username = "utente1"           # the login name, when it is not the address (optional)
    url = "imaps://utente1%40pec.esempio.it@imap.pec.esempio.it:993/INBOX"

    [trust]
    ca = "ca.pem"                  # trusted for the target's TLS and its signing certificate
    certificate = "target-signing.pem"
    crl = "crl.pem"                # the CA's CRL
    index = "providers.ldif.p7m"   # the target's published index (signed LDIF): IDX-01..06, IDX-14, SIG-16
    index_signer = "index-signer.pem"

    [counterpart]                  # where the target delivers mail for the counterpart's domain
    host = "127.0.0.1"
    port = 2626
    domain = "pec.controparte.test"

    [timers]                       # the deployment's own durations, in seconds
    preavviso = 43200
    timeout = 86400
    window_start = 79200

    [capabilities]
    ordinary_mail = "anomaly"      # or "refuse" (decision D15)
    sender_mismatch = "smtp"       # or "notice" (decision D14)
    max_recipients = 50
    max_total_size = 30000000
    max_message_size = 100000000
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from ..schemafiles import schema_path


class ProfileError(ValueError):
    pass


@dataclass
class Mailbox:
    address: str
    url: str
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)  # the built-in target sets it directly
    username: str | None = None  # the SMTP AUTH login name, when it is not the address

    @property
    def login(self) -> str:
        return self.username or self.address

    def secret(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_env:
            return os.environ.get(self.password_env)
        return None


@dataclass
class TargetProfile:
    name: str
    domains: list[str]
    service_address: str
    receipt_mailbox: str
    access: tuple[str, int]
    access_tls: str
    incoming: tuple[str, int]
    mailboxes: list[Mailbox]
    timers: dict[str, float]
    capabilities: dict[str, object]
    ca_file: Path | None = None
    signing_certificate: Path | None = None
    # The target's own published providers index (signed LDIF) and the certificate that signs it.
    published_index: Path | None = None
    published_index_signer: Path | None = None
    crl_file: Path | None = None  # the CRL of the target's CA (its signing certificate's revocation)
    counterpart_listen: tuple[str, int] = ("127.0.0.1", 0)
    counterpart_domain: str = "pec.controparte.test"
    ordinary_listen: tuple[str, int] = ("127.0.0.1", 0)
    ordinary_domain: str = "esterno.test"
    kind: str = "profile"
    source: Path | None = None

    def mailbox(self, index: int) -> Mailbox:
        return self.mailboxes[index]

    def capability(self, name: str, default=None):
        return self.capabilities.get(name, default)

    def missing_files(self) -> list[str]:
        """The files the profile names that are not there, as `field: path` (checked before a run starts)."""
        named = {"trust.ca": self.ca_file, "trust.certificate": self.signing_certificate,
                 "trust.index": self.published_index, "trust.index_signer": self.published_index_signer,
                 "trust.crl": self.crl_file}
        out = [f"{k}: {v}" for k, v in named.items() if v is not None and not v.is_file()]
        out += [f"mailboxes.url: {m.url.removeprefix('maildir://')}" for m in self.mailboxes
                if m.url.startswith("maildir://") and not Path(m.url.removeprefix("maildir://")).is_dir()]
        return out

    def describe(self) -> dict:
        """What a report may show: no password, no environment variable values."""
        caps = {k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else v)
                for k, v in self.capabilities.items()}
        return {"name": self.name, "kind": self.kind, "profile": str(self.source) if self.source else None,
                "domains": list(self.domains), "capabilities": caps}


def _schema() -> dict:
    return json.loads(schema_path("profile.schema.json").read_text(encoding="utf-8"))


def load_profile(path: Path) -> TargetProfile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise ProfileError(f"{path}: " + "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}"
                                                   for e in errors[:5]))
    base = path.parent

    def rel(value: str | None) -> Path | None:
        return None if value is None else (base / value).resolve()

    def url(value: str) -> str:
        # A relative Maildir path is relative to the profile, like the trust files.
        path = value.removeprefix("maildir://")
        return value if path == value or path.startswith("/") else f"maildir://{(base / path).resolve()}"

    counterpart = data.get("counterpart", {})
    ordinary = data.get("ordinary", {})
    trust = data.get("trust", {})
    return TargetProfile(
        name=data["name"],
        domains=[d.lower() for d in data["domains"]],
        service_address=data.get("service_address", f"posta-certificata@{data['domains'][0]}"),
        receipt_mailbox=data.get("receipt_mailbox", f"ricevute@{data['domains'][0]}"),
        access=(data["access"]["host"], int(data["access"]["port"])),
        access_tls=data["access"].get("tls", "starttls"),
        incoming=(data["incoming"]["host"], int(data["incoming"]["port"])),
        mailboxes=[Mailbox(m["address"].lower(), url(m["url"]), m.get("password_env"), username=m.get("username"))
                   for m in data["mailboxes"]],
        timers={k: float(v) for k, v in data.get("timers", {}).items()},
        capabilities=dict(data.get("capabilities", {})),
        ca_file=rel(trust.get("ca")),
        signing_certificate=rel(trust.get("certificate")),
        published_index=rel(trust.get("index")),
        published_index_signer=rel(trust.get("index_signer")),
        crl_file=rel(trust.get("crl")),
        counterpart_listen=(counterpart.get("host", "127.0.0.1"), int(counterpart.get("port", 0))),
        counterpart_domain=counterpart.get("domain", "pec.controparte.test"),
        ordinary_listen=(ordinary.get("host", "127.0.0.1"), int(ordinary.get("port", 0))),
        ordinary_domain=ordinary.get("domain", "esterno.test"),
        kind="profile",
        source=path,
    )

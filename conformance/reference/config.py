"""Configuration of the reference provider (TOML), with paths relative to the file.

Example (every section but [provider], [signing] and [users] is optional)::

    [provider]
    name = "Gestore Alfa S.p.A."
    domains = ["pec.alfa.test"]
    data_dir = "alfa-data"                 # Maildir, spool, SQLite
    # service_address = "posta-certificata@pec.alfa.test"
    # receipt_mailbox = "ricevute@pec.alfa.test"

    [signing]
    key = "pki/providers/gestore-alfa-s-p-a/key.pem"
    certificate = "pki/providers/gestore-alfa-s-p-a/cert.pem"
    digest = "sha256"

    [tls]                                    # server certificate for STARTTLS
    key = "pki/tls/key.pem"
    certificate = "pki/tls/cert.pem"

    [trust]
    ca = ["pki/ca/ca.pem"]
    crl = ["pki/ca/crl.pem"]
    index = "pki/index/providers.ldif.p7m"
    index_signer = "pki/index/index-signer.pem"
    index_refresh = 86400                     # reload index and CRLs daily (IDX-07, RIC-07)

    [listen]
    access = "127.0.0.1:2587"
    incoming = "127.0.0.1:2525"

    [users]
    "mario.rossi@pec.alfa.test" = "password"       # or { password = "...", quota = 1000000 }

    [routes]                                  # no DNS here: domain -> host:port, "*" for the rest
    "pec.beta.test" = "127.0.0.1:2625"

    [timers]                                  # seconds
    preavviso = 43200
    timeout = 86400
    window_start = 79200

    [limits]
    max_recipients = 500
    max_total_size = 100000000                # size x recipients; the decree's floor is 30 MB
    max_message_size = 200000000              # above it: SMTP refusal, no notice (SIZ-03)

    [policy]
    ordinary_mail = "anomaly"                 # or "refuse" (decision D15)
    virus_scanner = "eicar"                   # or "clamd:/run/clamav/clamd.ctl"
    retention_months = 30
    durability = "process"                    # or "power": fsync every commit and delivered message
    faults = []
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..pec.constants import SERVICE_LOCAL_PART

DECREE_MIN_RECIPIENTS = 50
DECREE_MIN_TOTAL_SIZE = 30_000_000


class ConfigError(ValueError):
    """The configuration is incomplete or inconsistent."""


@dataclass
class User:
    address: str
    password: str
    quota: int = 0  # bytes; 0 = unlimited


@dataclass
class Timers:
    preavviso: float = 12 * 3600.0
    timeout: float = 24 * 3600.0
    window_start: float = 22 * 3600.0
    scheduler_interval: float = 1.0
    retry_interval: float = 5.0
    give_up_after: float = 24 * 3600.0


@dataclass
class Limits:
    max_recipients: int = 500
    max_total_size: int = 100_000_000
    max_message_size: int = 200_000_000


@dataclass
class ProviderConfig:
    name: str
    domains: list[str]
    data_dir: Path
    signing_key: Path
    signing_certificate: Path
    digest: str = "sha256"
    service_address: str = ""
    receipt_mailbox: str = ""
    tls_key: Path | None = None
    tls_certificate: Path | None = None
    ca: list[Path] = field(default_factory=list)
    crl: list[Path] = field(default_factory=list)
    index: Path | None = None
    index_signer: Path | None = None
    index_refresh: float = 86400.0  # seconds between reloads of the index and CRLs (IDX-07: daily)
    access: tuple[str, int] = ("127.0.0.1", 0)
    incoming: tuple[str, int] = ("127.0.0.1", 0)
    users: dict[str, User] = field(default_factory=dict)
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    timers: Timers = field(default_factory=Timers)
    limits: Limits = field(default_factory=Limits)
    ordinary_mail: str = "anomaly"
    virus_scanner: str = "eicar"
    retention_months: int = 30
    faults: list[str] = field(default_factory=list)
    # "process": nothing acknowledged is lost when the process is killed; "power": also on a power cut
    # (an fsync per commit and per delivered message).
    durability: str = "process"

    def __post_init__(self) -> None:
        self.domains = [d.lower() for d in self.domains]
        if not self.service_address:
            self.service_address = f"{SERVICE_LOCAL_PART}@{self.domains[0]}"
        if not self.receipt_mailbox:
            self.receipt_mailbox = f"ricevute@{self.domains[0]}"
        if self.durability not in ("process", "power"):
            raise ConfigError("policy.durability must be 'process' or 'power'")
        if self.ordinary_mail not in ("anomaly", "refuse"):
            raise ConfigError("policy.ordinary_mail must be 'anomaly' or 'refuse'")
        if self.limits.max_recipients < DECREE_MIN_RECIPIENTS:
            raise ConfigError(f"limits.max_recipients below the decree's floor of {DECREE_MIN_RECIPIENTS} (D17)")
        if self.limits.max_total_size < DECREE_MIN_TOTAL_SIZE:
            raise ConfigError(f"limits.max_total_size below the decree's floor of {DECREE_MIN_TOTAL_SIZE} (D17)")

    def is_local(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self.domains

    def route_for(self, domain: str) -> tuple[str, int] | None:
        return self.routes.get(domain.lower()) or self.routes.get("*")


def _hostport(value: str, label: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{label}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def load_config(path: Path) -> ProviderConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.parent

    def p(value: str | None) -> Path | None:
        return None if value is None else (base / value).resolve()

    try:
        prov, sign = data["provider"], data["signing"]
        users = {}
        for address, value in data.get("users", {}).items():
            if isinstance(value, str):
                users[address.lower()] = User(address.lower(), value)
            else:
                users[address.lower()] = User(address.lower(), value["password"], int(value.get("quota", 0)))
        trust, tls, listen = data.get("trust", {}), data.get("tls", {}), data.get("listen", {})
        policy = data.get("policy", {})
        return ProviderConfig(
            name=prov["name"],
            domains=list(prov["domains"]),
            data_dir=p(prov.get("data_dir", "data")),
            service_address=prov.get("service_address", ""),
            receipt_mailbox=prov.get("receipt_mailbox", ""),
            signing_key=p(sign["key"]),
            signing_certificate=p(sign["certificate"]),
            digest=sign.get("digest", "sha256"),
            tls_key=p(tls.get("key")),
            tls_certificate=p(tls.get("certificate")),
            ca=[p(x) for x in trust.get("ca", [])],
            crl=[p(x) for x in trust.get("crl", [])],
            index=p(trust.get("index")),
            index_signer=p(trust.get("index_signer")),
            index_refresh=float(trust.get("index_refresh", 86400.0)),
            access=_hostport(listen.get("access", "127.0.0.1:0"), "listen.access"),
            incoming=_hostport(listen.get("incoming", "127.0.0.1:0"), "listen.incoming"),
            users=users,
            routes={d.lower(): _hostport(v, f"routes.{d}") for d, v in data.get("routes", {}).items()},
            timers=Timers(**data.get("timers", {})),
            limits=Limits(**data.get("limits", {})),
            ordinary_mail=policy.get("ordinary_mail", "anomaly"),
            virus_scanner=policy.get("virus_scanner", "eicar"),
            retention_months=int(policy.get("retention_months", 30)),
            faults=list(policy.get("faults", [])),
            durability=policy.get("durability", "process"),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None

"""A ready-made test deployment: a test PKI, providers with their index entries, TLS certificates,
users, routes to each other and one TOML configuration per provider. Used by the tests, the
benchmarks and `pec-conformance reference init`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..pec.pki import (
    ProviderSpec,
    issue_tls_server_certificate,
    load_pki_directory,
    private_key_pem,
    write_pki_directory,
)
from .provider import free_port


@dataclass
class ProviderPlan:
    name: str
    domains: tuple[str, ...]
    users: dict[str, str]
    faults: list[str] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)


DEFAULT_PLANS = (
    ProviderPlan("Gestore Alfa S.p.A.", ("pec.alfa.test",),
                 {"mario.rossi@pec.alfa.test": "alfa-secret-1", "giulia.neri@pec.alfa.test": "alfa-secret-2"}),
    ProviderPlan("Gestore Beta S.p.A.", ("pec.beta.test", "cert.beta.test"),
                 {"anna.bianchi@pec.beta.test": "beta-secret-1", "luigi.verdi@cert.beta.test": "beta-secret-2"}),
)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_deployment(directory: Path, plans=DEFAULT_PLANS, *, timers: dict | None = None,
                     external_route: tuple[str, int] | None = None, host: str = "127.0.0.1") -> list[Path]:
    """Write the PKI and one config per provider; returns the config paths (ports chosen now)."""
    directory = Path(directory)
    layout = write_pki_directory(directory / "pki", [ProviderSpec(p.name, p.domains) for p in plans])
    tls_key, tls_cert = issue_tls_server_certificate(layout.ca, ("localhost", host))
    (directory / "pki" / "tls").mkdir(parents=True, exist_ok=True)
    (directory / "pki" / "tls" / "key.pem").write_bytes(private_key_pem(tls_key))
    (directory / "pki" / "tls" / "cert.pem").write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
    ports = {p.name: (free_port(host), free_port(host)) for p in plans}
    manifest = json.loads((directory / "pki" / "pki.json").read_text())
    paths = []
    timers = timers or {}
    for plan, files, prov in zip(plans, layout.provider_files, manifest["providers"], strict=True):
        access, incoming = ports[plan.name]
        routes = {d: f"{host}:{ports[other.name][1]}" for other in plans if other is not plan for d in other.domains}
        if external_route:
            routes["*"] = f"{external_route[0]}:{external_route[1]}"
        lines = [
            "[provider]", f"name = {_toml_str(plan.name)}", f"domains = {json.dumps(list(plan.domains))}",
            f"data_dir = {_toml_str(files.slug + '-data')}", "",
            "[signing]", f"key = {_toml_str('pki/' + str(files.key.relative_to(directory / 'pki')))}",
            f"certificate = {_toml_str('pki/' + str(files.certificate.relative_to(directory / 'pki')))}", "",
            "[tls]", 'key = "pki/tls/key.pem"', 'certificate = "pki/tls/cert.pem"', "",
            "[trust]", 'ca = ["pki/ca/ca.pem"]', 'crl = ["pki/ca/crl.pem"]',
            'index = "pki/index/providers.ldif.p7m"', 'index_signer = "pki/index/index-signer.pem"', "",
            "[listen]", f'access = "{host}:{access}"', f'incoming = "{host}:{incoming}"', "",
            "[users]",
        ]
        for address, password in plan.users.items():
            quota = plan.quotas.get(address, 0)
            lines.append(f"{_toml_str(address)} = {{ password = {_toml_str(password)}, quota = {quota} }}")
        lines += ["", "[routes]"] + [f"{_toml_str(d)} = {_toml_str(v)}" for d, v in routes.items()]
        lines += ["", "[timers]"] + [f"{k} = {v}" for k, v in timers.items()]
        lines += ["", "[policy]", f"faults = {json.dumps(plan.faults)}", ""]
        path = directory / f"{files.slug}.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
        assert prov["name"] == plan.name
    return paths


def pki_of(directory: Path):
    return load_pki_directory(Path(directory) / "pki")

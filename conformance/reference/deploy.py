"""A ready-made test deployment: a test PKI, providers with their index entries, TLS certificates,
users, routes to each other and one TOML configuration per provider. Used by the tests, the
benchmarks and `pec-conformance reference init`."""

from __future__ import annotations

import json
import os
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
from .faults import certificate_organization
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
    # A certificate fault of the deployment (faults.certificate_organization) is issued into the PKI itself.
    layout = write_pki_directory(directory / "pki", [ProviderSpec(
        p.name, p.domains, certificate_organization=certificate_organization(p.faults)) for p in plans])
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


class SandboxError(ValueError):
    """The profile or the counterpart's PKI cannot make a sandbox."""


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def write_target_sandbox(directory: Path, profile, counterpart_pki: Path) -> Path:
    """A one-provider reference deployment that is the target a profile describes: its name, domains,
    endpoints, test mailboxes (passwords from the profile's environment variables), timers and limits;
    loaded with the counterpart's signed index, CA and CRL (what a provider's operator loads) and routing
    the counterpart's domain and the ordinary domain to the suite. Returns the config path.

    The provider's own PKI (its published index among it) is under `pki/`; `index/providers.ldif.p7m` is
    its local copy of the directory: its own record and the counterpart's records, taken from the
    counterpart's signed index after its signature verified."""
    from cryptography import x509

    from ..pec import index as pec_index
    from ..pec.pki import load_pki_directory as load_pki

    directory = Path(directory)
    users: dict[str, tuple[str, int]] = {}
    unset = [m.password_env or m.address for m in profile.mailboxes if m.secret() is None]
    if unset:
        raise SandboxError(f"set the test mailboxes' passwords first: {', '.join(unset)}")
    for m in profile.mailboxes:
        users[m.address] = (m.secret(), 0)
    full = profile.capability("full_mailbox")
    if full:  # over quota from the first byte (NOT-03); nobody logs into it
        users[str(full).lower()] = ("full-mailbox-" + os.urandom(6).hex(), 1)
    try:
        load_pki(Path(counterpart_pki))  # a complete `pki init` folder, not just an index
        signer = x509.load_pem_x509_certificate((Path(counterpart_pki) / "index/index-signer.pem").read_bytes())
        kit_index, signed = pec_index.load_index((Path(counterpart_pki) / "index/providers.ldif.p7m").read_bytes(),
                                                 signer)
    except (OSError, ValueError, KeyError) as exc:
        raise SandboxError(f"{counterpart_pki}: not a `pki init` folder ({exc})") from None
    if signed is None or not signed.signer_trusted:
        raise SandboxError(f"{counterpart_pki}: the index signature does not verify with its index-signer.pem")
    layout = write_pki_directory(directory / "pki", [ProviderSpec(profile.name, tuple(profile.domains),
                                                                  profile.receipt_mailbox)])
    tls_key, tls_cert = issue_tls_server_certificate(layout.ca, ("localhost", _loopback(profile.access[0])))
    (directory / "pki" / "tls").mkdir(parents=True, exist_ok=True)
    (directory / "pki" / "tls" / "key.pem").write_bytes(private_key_pem(tls_key))
    (directory / "pki" / "tls" / "cert.pem").write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
    # What it publishes for the directory (its successor certificate listed ahead of time), where a profile names it.
    publish_index(directory / "pki", profile.name, out=directory / "pki" / "index")
    # The local copy of the directory, signed by this provider's own index signer so it reloads it like any index.
    records = list(layout.index.records) + [r for r in kit_index.records if r.provider_name != profile.name]
    ldif = pec_index.write_ldif(records)
    (directory / "index").mkdir(exist_ok=True)
    (directory / "index" / "providers.ldif").write_bytes(ldif)
    (directory / "index" / "providers.ldif.p7m").write_bytes(
        pec_index.sign_index(ldif, layout.index_signer_key, layout.index_signer_certificate))
    files = layout.provider_files[0]
    kit_dir = Path(counterpart_pki).resolve()

    def rel(path: Path) -> str:
        return _toml_str(os.path.relpath(Path(path).resolve(), directory.resolve()))

    timers = dict(profile.timers)
    if timers and max(timers.values()) < 600:  # scaled timers: a scheduler that keeps up with them
        timers |= {"scheduler_interval": 0.1, "retry_interval": 0.3}
    if "timeout" in timers:
        timers["give_up_after"] = timers["timeout"]
    caps = profile.capabilities
    cp_host, cp_port = profile.counterpart_listen
    od_host, od_port = profile.ordinary_listen
    lines = [
        "# The provider under test of the local sandbox, written by `reference init --for` from a target profile.",
        "[provider]", f"name = {_toml_str(profile.name)}", f"domains = {json.dumps(profile.domains)}",
        f"data_dir = {_toml_str(files.slug + '-data')}", f"service_address = {_toml_str(profile.service_address)}",
        f"receipt_mailbox = {_toml_str(profile.receipt_mailbox)}", "",
        "[signing]", f"key = {rel(files.key)}", f"certificate = {rel(files.certificate)}", "",
        "[tls]", 'key = "pki/tls/key.pem"', 'certificate = "pki/tls/cert.pem"', "",
        "# The counterpart's CA and CRL beside this provider's own; its records in the local directory copy.",
        "[trust]", f"ca = [\"pki/ca/ca.pem\", {rel(kit_dir / 'ca/ca.pem')}]",
        f"crl = [\"pki/ca/crl.pem\", {rel(kit_dir / 'ca/crl.pem')}]",
        'index = "index/providers.ldif.p7m"', 'index_signer = "pki/index/index-signer.pem"',
        *([f"index_refresh = {caps['index_refresh']}"] if "index_refresh" in caps else []), "",
        "[listen]", f'access = "{profile.access[0]}:{profile.access[1]}"',
        f'incoming = "{profile.incoming[0]}:{profile.incoming[1]}"', "",
        "[users]",
        *[f"{_toml_str(a)} = {{ password = {_toml_str(p)}, quota = {q} }}" for a, (p, q) in users.items()], "",
        "# No DNS: the counterpart's domain and everything else (the ordinary domain) go to the suite.",
        "[routes]", f"{_toml_str(profile.counterpart_domain)} = \"{_loopback(cp_host)}:{cp_port}\"",
        f"\"*\" = \"{_loopback(od_host)}:{od_port}\"", "",
        "[timers]", *[f"{k} = {v}" for k, v in timers.items()], "",
        "[limits]", *[f"{k} = {int(caps[k])}" for k in ("max_recipients", "max_total_size", "max_message_size")
                      if k in caps], "",
        "[policy]", f"ordinary_mail = {_toml_str(str(caps.get('ordinary_mail', 'anomaly')))}", "faults = []", "",
    ]
    path = directory / f"{files.slug}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def sandbox_mismatches(profile, directory: Path, config: Path) -> list[str]:
    """Where the profile's files do not name what the sandbox wrote: `field = "path"` lines to put in it."""
    directory = Path(directory).resolve()
    slug = config.stem
    wanted = {"trust.ca": (profile.ca_file, directory / "pki/ca/ca.pem"),
              "trust.crl": (profile.crl_file, directory / "pki/ca/crl.pem"),
              "trust.certificate": (profile.signing_certificate, directory / f"pki/providers/{slug}/cert.pem"),
              "trust.index": (profile.published_index, directory / "pki/index/providers.ldif.p7m"),
              "trust.index_signer": (profile.published_index_signer, directory / "pki/index/index-signer.pem")}
    out = [f"{k} = \"{want}\"" for k, (have, want) in wanted.items() if have is None or Path(have).resolve() != want]
    for m in profile.mailboxes:
        want = directory / f"{slug}-data" / "maildir" / m.address
        if m.url.startswith("maildir://") and Path(m.url.removeprefix("maildir://")).resolve() != want:
            out.append(f"mailboxes[{m.address}].url = \"maildir://{want}\"")
    return out


SECONDARY_UNIT = "Ambiente di collaudo"


def publish_index(pki_dir: Path, provider_name: str, faults=(), out: Path | None = None) -> Path:
    """Write the provider's published index (the signed LDIF it serves for the directory) under `out`
    (default: `<pki_dir>/../published`): its records as the PKI has them, its own record also listing its
    successor certificate ahead of time, valid from 30 days before the current one ends (SIG-16), and the
    index faults switched on applied to its own record. Returns the file's path."""
    import dataclasses
    from datetime import timedelta

    from ..pec import index as pec_index
    from ..pec.pki import issue_provider_certificate

    layout = load_pki_directory(Path(pki_dir))
    on = set(faults)
    mine = [r for r in layout.index.records if r.provider_name == provider_name]
    if not mine:
        raise ValueError(f"{pki_dir}: no record of {provider_name}")
    cred = layout.provider(provider_name)
    records = []
    for r in layout.index.records:
        if r.provider_name == provider_name:
            # The successor overlaps the current certificate; with the fault it starts a day after its end.
            end = cred.certificate.not_valid_after_utc
            start = end + timedelta(days=1) if "idx-renewal-gap" in on else end - timedelta(days=30)
            _key, nxt = issue_provider_certificate(layout.ca, provider_name, cred.service_address,
                                                   not_before=start, not_after=start + timedelta(days=730))
            der = nxt.public_bytes(serialization.Encoding.DER)
            r = dataclasses.replace(r, certificates=(*r.certificates, der),
                                    certificate_hashes=(*r.certificate_hashes, pec_index.certificate_hash(der)))
            if "idx-wrong-certificate-hash" in on:
                r = dataclasses.replace(r, certificate_hashes=tuple(
                    pec_index.certificate_hash(h.encode()) for h in r.certificate_hashes))
            if "idx-receipt-in-brackets" in on:
                r = dataclasses.replace(r, mail_receipt=f"<{r.mail_receipt}>")
            if "idx-service-domain-unlisted" in on:
                r = dataclasses.replace(r, managed_domains=tuple(f"posta.{d}" for d in r.managed_domains))
        records.append(r)
    text = pec_index.write_ldif(records).decode("utf-8")
    blocks = text.split("\n\n")
    dn_line = f"dn: {pec_index.provider_dn(provider_name)}"
    for i, block in enumerate(blocks):
        if not block.startswith(dn_line + "\n"):
            continue
        if "idx-dn-outside-postacert" in on:
            block = block.replace(dn_line, dn_line.replace(",o=postacert", ",o=pec"), 1)
        if "idx-no-provider-name" in on:
            block = "\n".join(ln for ln in block.split("\n") if not ln.startswith("providerName:"))
        if "idx-no-main-record" in on:
            block = block.replace(dn_line, f"dn: providerUnit={SECONDARY_UNIT},{dn_line[4:]}", 1)
            block += f"\nproviderUnit: {SECONDARY_UNIT}\nLDIFLocationURL: https://indice.invalid/providers.ldif.p7m"
        blocks[i] = block
    ldif = "\n\n".join(blocks).encode("utf-8")
    out = Path(out) if out is not None else Path(pki_dir).parent / "published"
    out.mkdir(parents=True, exist_ok=True)
    if "idx-unsigned" in on:
        path, data = out / "providers.ldif", ldif
    else:
        path = out / "providers.ldif.p7m"
        data = pec_index.sign_index(ldif, layout.index_signer_key, layout.index_signer_certificate)
        (out / "providers.ldif").write_bytes(ldif)  # the plain text beside it, as `pki init` writes it
    path.write_bytes(data)
    return path

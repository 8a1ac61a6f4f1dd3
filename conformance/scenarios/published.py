"""The target's own published providers index (IDX-01..06, IDX-14, SIG-16): the signed LDIF the profile
names, judged as the central directory and every other provider read it."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509

from ..checks.published_index import judge_published_index
from ..engine.core import HarnessError, ScenarioContext, Skip, scenario


@scenario("index.published", "The target's published index",
          "The signed LDIF the target publishes for the directory: DER SignedData over UTF-8 LDIF signed by its "
          "signer, its records under o=postacert with every attribute the provider class requires, a main record, "
          "each certificate hash the SHA-1 of its certificate, bare mailReceipt and dot-atom domains, the service "
          "address's domain managed by the record holding the signing certificate, and a renewed certificate "
          "listed ahead of the old one's end.",
          ["IDX-01", "IDX-02", "IDX-03", "IDX-04", "IDX-05", "IDX-06", "IDX-14", "SIG-16"])
def published_index(ctx: ScenarioContext) -> None:
    p = ctx.world.profile
    if p.published_index is None:
        raise Skip("the profile names no published index (trust.index)")
    try:
        data = p.published_index.read_bytes()
        signer = (x509.load_pem_x509_certificate(p.published_index_signer.read_bytes())
                  if p.published_index_signer is not None else None)
        signing = (x509.load_pem_x509_certificate(p.signing_certificate.read_bytes())
                   if p.signing_certificate is not None else None)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"the profile's index files cannot be read: {exc}") from None
    path = ctx.save("in", "published-index", data)
    ctx.event("target", "suite", "published index", evidence=path)
    for f in judge_published_index(data, provider_name=p.name, domains=list(p.domains),
                                   service_address=p.service_address, signer=signer, signing_certificate=signing,
                                   now=datetime.now(UTC)):
        f.evidence = path  # type: ignore[attr-defined]
        ctx.findings.append(f)

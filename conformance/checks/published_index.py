"""The target's own published providers index (RFC 6109 §4.5): its signed LDIF judged for IDX-01..06,
IDX-14 and SIG-16.

The file is read as given (never fetched: whether it is served over HTTPS at LDIFLocationURL is not
observed). Entries are read leniently, one by one, so that a record missing a mandatory attribute is
a FAIL of the requirement it breaks, not an unreadable index.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ldif
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..pec.cms import verify_cms
from ..pec.index import BASE_DN, MAX_INDEX_SIZE
from .findings import Finding, Verdict

CHECK = "index.published"
PROVIDER_MUST = ("providercertificatehash", "providercertificate", "providername", "mailreceipt", "manageddomains")
LABEL = {"providercertificatehash": "providerCertificateHash", "providercertificate": "providerCertificate",
         "providername": "providerName", "mailreceipt": "mailReceipt", "manageddomains": "managedDomains",
         "ldiflocationurl": "LDIFLocationURL", "providerunit": "providerUnit"}
# A certificate this close to its end should have its successor listed beside it (SIG-16).
RENEWAL_NOTICE = timedelta(days=30)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


@dataclass
class Entry:
    dn: str
    attrs: dict[str, list[bytes]] = field(default_factory=dict)

    def text(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace").strip() for v in self.attrs.get(name, [])]


def _f(reqs: tuple[str, ...], verdict: Verdict, message: str, **kw) -> Finding:
    return Finding(reqs, verdict, message, check=CHECK, **kw)


def _norm_dn(dn: str) -> str:
    return ",".join(part.strip().lower() for part in dn.split(","))


def read_entries(ldif_bytes: bytes) -> list[Entry]:
    """Every entry of an LDIF (attribute names lower-cased, options like ;binary dropped); URLs never fetched."""
    parser = ldif.LDIFParser(io.BytesIO(ldif_bytes.removeprefix(b"\xef\xbb\xbf")), process_url_schemes=(),
                             encoding=None, strict=False)
    out = []
    for dn, entry in parser.parse():
        if dn is None:
            continue
        attrs: dict[str, list[bytes]] = {}
        for key, values in entry.items():
            attrs.setdefault(key.split(";", 1)[0].strip().lower(), []).extend(v for v in values if v.strip())
        out.append(Entry(dn, attrs))
    return out


def _signed(data: bytes, signer: x509.Certificate | None) -> tuple[bytes | None, list[Finding]]:
    """IDX-04: binary DER SignedData carrying UTF-8 LDIF, signed by the named signer. Returns the LDIF."""
    reqs = ("IDX-04",)
    head = data.lstrip()[:16].lower()
    if head.startswith((b"dn:", b"version:", b"#")):
        return data, [_f(reqs, Verdict.FAIL, "the published index is plain LDIF, not signed",
                         expected="PKCS#7 signed-data (.p7m, DER) carrying the LDIF", actual="LDIF text")]
    if not data.startswith(b"\x30"):
        return None, [_f(reqs, Verdict.FAIL, "the published index is not binary DER",
                         expected="DER SignedData", actual=repr(data[:20]))]
    verification = verify_cms(data)
    if verification.encapsulated_content is None:
        return None, [_f(reqs, Verdict.FAIL, "the published index carries no LDIF inside its signature",
                         actual="; ".join(verification.errors) or "detached signature")]
    ldif_bytes = verification.encapsulated_content
    found: list[Finding] = []
    if not verification.ok:
        found.append(_f(reqs, Verdict.FAIL, "the published index's signature does not verify",
                        actual="; ".join(verification.errors)))
    elif signer is not None and verification.signer_certificate != signer:
        subject = verification.signer_certificate.subject.rfc4514_string() if verification.signer_certificate else "-"
        found.append(_f(reqs, Verdict.FAIL, "the published index is signed by another certificate than its signer",
                        expected=signer.subject.rfc4514_string(), actual=subject))
    try:
        ldif_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        found.append(_f(reqs, Verdict.FAIL, "the published LDIF is not UTF-8", actual=str(exc)))
    if not found:
        who = "its signer" if signer is not None else "the certificate it carries (no signer named in the profile)"
        found.append(_f(reqs, Verdict.PASS if signer is not None else Verdict.INFO,
                        f"DER SignedData over UTF-8 LDIF, signature verified with {who}; serving it over HTTPS at "
                        "LDIFLocationURL is not observed (the suite never fetches)"))
    return ldif_bytes, found


def _certificate(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _judge_record(e: Entry, name: str) -> list[Finding]:
    out: list[Finding] = []
    names = e.text("providername")
    out.append(_f(("IDX-02",), Verdict.PASS if names else Verdict.FAIL,
                  f"{e.dn}: providerName " + (f"'{names[0]}'" if names else "missing")))
    classes = {c.lower() for c in e.text("objectclass")}
    missing = [LABEL[a] for a in PROVIDER_MUST if not e.attrs.get(a)]
    unit = e.text("providerunit")
    want = f"providername={name.lower()},{BASE_DN}"
    if unit:
        want = f"providerunit={unit[0].lower()},{want}"
    problems = []
    if "provider" not in classes:
        problems.append("objectClass provider missing")
    if missing:
        problems.append(f"MUST attribute(s) missing: {', '.join(missing)}")
    if _norm_dn(e.dn) != want:
        problems.append(f"DN is not {want}")
    out.append(_f(("IDX-01",), Verdict.FAIL if problems else Verdict.PASS,
                  f"{e.dn}: " + ("; ".join(problems) if problems else
                                 "DN under o=postacert, objectClass provider with all its MUST attributes"),
                  expected=want if problems else None, actual=_norm_dn(e.dn) if problems else None))
    # IDX-05: each hash is the SHA-1 of a listed certificate, and each certificate has its hash.
    hashes = {h.lower() for h in e.text("providercertificatehash")}
    computed = {hashlib.sha1(der).hexdigest() for der in e.attrs.get("providercertificate", [])}
    if hashes or computed:
        ok = hashes == computed
        out.append(_f(("IDX-05",), Verdict.PASS if ok else Verdict.FAIL,
                      f"{e.dn}: providerCertificateHash " + ("is the SHA-1 of each providerCertificate" if ok else
                                                            "does not match the certificates"),
                      expected=", ".join(sorted(computed)) if not ok else None,
                      actual=", ".join(sorted(hashes)) if not ok else None))
    receipts, domains = e.text("mailreceipt"), e.text("manageddomains")
    bad = [r for r in receipts if not _addr_spec(r)] + [d for d in domains if not _DOMAIN.match(d)]
    if receipts or domains:
        out.append(_f(("IDX-06",), Verdict.FAIL if bad else Verdict.PASS,
                      f"{e.dn}: " + (f"not a bare addr-spec / dot-atom domain: {', '.join(bad)}" if bad else
                                     "mailReceipt a bare addr-spec, managedDomains dot-atom domains"),
                      actual=", ".join(bad) or None))
    return out


def _addr_spec(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at) and bool(_DOT_ATOM.match(local)) and bool(_DOMAIN.match(domain))


def _renewal(e: Entry, now: datetime) -> Finding:
    """SIG-16: near the end of a certificate, its successor is listed beside it with overlapping validity."""
    certs = sorted((c for c in map(_certificate, e.attrs.get("providercertificate", [])) if c is not None),
                   key=lambda c: c.not_valid_before_utc)
    if not certs:
        return _f(("SIG-16",), Verdict.FAIL, f"{e.dn}: no readable providerCertificate")
    for older, newer in zip(certs, certs[1:], strict=False):
        if newer.not_valid_before_utc > older.not_valid_after_utc:
            return _f(("SIG-16",), Verdict.FAIL, f"{e.dn}: the renewed certificate starts after the old one ends",
                      expected=f"valid from before {older.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                      actual=f"valid from {newer.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    last = certs[-1]
    left = last.not_valid_after_utc - now
    if left < RENEWAL_NOTICE:
        return _f(("SIG-16",), Verdict.FAIL, f"{e.dn}: the newest listed certificate ends in {left.days} day(s) "
                  "and no renewed one is published", expected=f"a successor listed {RENEWAL_NOTICE.days} days ahead")
    if len(certs) > 1:
        return _f(("SIG-16",), Verdict.PASS, f"{e.dn}: {len(certs)} certificates listed with overlapping validity")
    return _f(("SIG-16",), Verdict.INFO, f"{e.dn}: one certificate, {left.days} days before its end: a renewal is "
              "not due yet")


def judge_published_index(data: bytes, *, provider_name: str, domains: list[str], service_address: str,
                          signer: x509.Certificate | None, signing_certificate: x509.Certificate | None,
                          now: datetime) -> list[Finding]:
    """Findings on a provider's own published index for IDX-01..06, IDX-14 and SIG-16."""
    if len(data) > MAX_INDEX_SIZE:
        return [_f(("IDX-04",), Verdict.ERROR, f"published index larger than {MAX_INDEX_SIZE} bytes: not read")]
    ldif_bytes, found = _signed(data, signer)
    if ldif_bytes is None:
        return found
    try:
        entries = read_entries(ldif_bytes)
    except Exception as exc:  # the ldif library raises ValueError, binascii.Error, UnicodeError...
        return [*found, _f(("IDX-01",), Verdict.FAIL, f"the published LDIF cannot be read: {exc}")]
    wanted = {d.lower() for d in domains}
    mine = [e for e in entries if provider_name.lower() in (n.lower() for n in e.text("providername"))
            or f"providername={provider_name.lower()}," in _norm_dn(e.dn)
            or wanted & {d.lower() for d in e.text("manageddomains")}]
    if not mine:
        return [*found, _f(("IDX-01", "IDX-03"), Verdict.FAIL, f"no record of {provider_name} in the published index",
                           actual=f"{len(entries)} entries, none naming it or its domains")]
    for e in mine:
        found += _judge_record(e, provider_name)
    mains = [e for e in mine if not e.attrs.get("providerunit")]
    located = [e.dn for e in mine if e.attrs.get("providerunit") and e.attrs.get("ldiflocationurl")]
    problems = ([] if mains else ["no main-environment record (every record has providerUnit)"]) + \
        [f"secondary record {dn} carries LDIFLocationURL" for dn in located]
    found.append(_f(("IDX-03",), Verdict.FAIL if problems else Verdict.PASS,
                    "; ".join(problems) or f"one main record and {len(mine) - len(mains)} secondary record(s), "
                                           "all in this LDIF"))
    service_domain = service_address.rpartition("@")[2].lower()
    if signing_certificate is not None:
        der = signing_certificate.public_bytes(Encoding.DER)
        holding = [e for e in mine if der in e.attrs.get("providercertificate", [])]
        if not holding:
            found.append(_f(("IDX-14",), Verdict.WARN, "the signing certificate is in none of the target's records"))
        else:
            listed = {d.lower() for e in holding for d in e.text("manageddomains")}
            ok = service_domain in listed
            found.append(_f(("IDX-14",), Verdict.PASS if ok else Verdict.WARN,
                            f"the service address's domain {service_domain} is " +
                            ("a managed domain of the record holding the signing certificate" if ok else
                             "not a managed domain of the record holding the signing certificate"),
                            expected=service_domain if not ok else None, actual=", ".join(sorted(listed))))
        found += [_renewal(e, now) for e in holding]
    else:
        found += [_renewal(e, now) for e in mains]
    return found

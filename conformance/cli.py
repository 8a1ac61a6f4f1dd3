"""Command line: `pec-conformance validate | list | pki | sample`.

Exit codes follow ARCHITECTURE.md: 0 nothing unexpected, 1 conformance failures, 2 usage or
harness error (click itself exits 2 on usage errors).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509

from . import __version__
from .catalogue import load_catalogue
from .checks.findings import REGISTRY, ValidationContext, Verdict
from .checks.validator import check, looks_like_daticert, validate_daticert
from .pec.constants import MAX_MESSAGE_BYTES, Kind
from .pec.index import MAX_INDEX_SIZE, IndexFormatError, load_index

EXIT_OK, EXIT_FAIL, EXIT_HARNESS = 0, 1, 2


class _OneLineErrors(click.Group):
    """Usage errors as one line on stderr and exit 2, never a traceback: an option is refused when it is
    parsed, before anything runs. A file that cannot be read or written is a usage error too."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_HARNESS)
        except click.ClickException as exc:
            where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "pec-conformance"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {where}: {message} (see --help)", err=True)
            sys.exit(EXIT_HARNESS)
        except OSError as exc:
            detail = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
            click.echo(f"error: {detail}", err=True)
            sys.exit(EXIT_HARNESS)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pec-conformance")
def main() -> None:
    """Conformance suite for Italian certified email (PEC, RFC 6109)."""


# ----------------------------------------------------------------------------------------- helpers


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _read_crl(path: Path) -> x509.CertificateRevocationList:
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _fail_usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_HARNESS)


_SHOWN = (Verdict.FAIL, Verdict.ERROR, Verdict.WARN)


# ---------------------------------------------------------------------------------------- validate

# Bounds of what `validate` reads besides the messages themselves.
MAX_CERT_FILE_BYTES = 16 * 1024 * 1024


class _InputError(Exception):
    """A file given to `validate` that it will not read; the message is one line."""


def _shown(path: Path | str) -> str:
    """A file name for any output: bytes that are not UTF-8 escaped (\\xNN), so text and JSON stay valid."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _printable(value):
    """Strings of a report with any undecodable byte (a surrogate escape) written as \\xNN: valid UTF-8 text
    and valid JSON whatever the message held."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _read_bounded(path: Path, limit: int) -> bytes:
    """A regular file of at most `limit` bytes. FIFOs, devices, directories and larger files are refused
    before anything is read (opened non-blocking: a FIFO without a writer cannot hang the open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _InputError(f"{_shown(path)}: {exc.strerror or type(exc).__name__}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _InputError(f"{_shown(path)}: is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a character device" if stat.S_ISCHR(info.st_mode)
                    else "a block device" if stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                    else "not a regular file")
            raise _InputError(f"{_shown(path)}: {kind}, not a regular file; not read")
        if info.st_size > limit:
            raise _InputError(f"{_shown(path)}: {info.st_size} bytes, larger than the {limit}-byte bound; not read")
        chunks, total = [], 0
        while total <= limit:  # the file may grow while it is read: the bound holds anyway
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _InputError(f"{_shown(path)}: grew beyond the {limit}-byte bound while read; not read")
        return b"".join(chunks)
    except OSError as exc:
        raise _InputError(f"{_shown(path)}: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)


def _certificates_from(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _crl_from(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--index", "index_path", type=click.Path(path_type=Path),
              help="Providers index: plain LDIF or the signed .p7m form.")
@click.option("--index-signer", type=click.Path(path_type=Path),
              help="Certificate that must have signed the .p7m index.")
@click.option("--ca", "ca_paths", multiple=True, type=click.Path(path_type=Path),
              help="Trusted CA certificate(s), PEM or DER. Repeatable.")
@click.option("--crl", "crl_paths", multiple=True, type=click.Path(path_type=Path),
              help="CRL(s) of the CA, PEM or DER; never fetched from the network. Repeatable.")
@click.option("--expect", "expected", type=click.Choice([str(k) for k in Kind if k not in
                                                         (Kind.ORDINARY, Kind.UNKNOWN)]),
              help="The kind every file must be.")
@click.option("--original", "original_path", type=click.Path(path_type=Path),
              help="The original as carried by the envelope, to check complete and brief copies.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show every finding, PASS included.")
def validate(files, index_path, index_signer, ca_paths, crl_paths, expected, original_path, as_json, verbose):
    """Judge captured PEC messages (or daticert.xml files) offline; exit 1 on any FAIL, 2 on unreadable input.

    Only regular files are read, each within a bound (messages and the original 64 MiB, the index 64 MiB,
    certificates and CRLs 16 MiB): a FIFO, a device, a directory or a larger file is refused (exit 2).
    """
    ctx = ValidationContext(now=datetime.now(UTC), expected_kind=Kind(expected) if expected else None)
    setup_notes: list[str] = []
    try:
        if index_path:
            signer = _certificates_from(_read_bounded(index_signer, MAX_CERT_FILE_BYTES))[0] if index_signer else None
            ctx.index, signed = load_index(_read_bounded(index_path, MAX_INDEX_SIZE), signer)
            if signed is not None and signer is not None and not signed.signer_trusted:
                _fail_usage(f"{_shown(index_path)}: the index signature does not verify with {_shown(index_signer)}")
            if signed is not None and signer is None:
                setup_notes.append("signed index read without --index-signer: its signature was not trusted")
        ctx.ca_certificates = [c for p in ca_paths for c in _certificates_from(_read_bounded(p, MAX_CERT_FILE_BYTES))]
        ctx.crls = [_crl_from(_read_bounded(p, MAX_CERT_FILE_BYTES)) for p in crl_paths]
        if original_path:
            ctx.carried_original = _read_bounded(original_path, MAX_MESSAGE_BYTES)
    except _InputError as exc:
        _fail_usage(str(exc))
    except (ValueError, IndexFormatError) as exc:
        _fail_usage(" ".join(str(exc).split()) or type(exc).__name__)
    exit_code = EXIT_OK
    reports = []
    decisions_named: set[str] = set()
    for path in files:
        try:
            raw = _read_bounded(path, MAX_MESSAGE_BYTES)
        except _InputError as exc:
            reports.append({"file": _shown(path), "error": str(exc)})
            exit_code = EXIT_HARNESS
            if not as_json:
                click.echo(f"unreadable: {exc}", err=True)
            continue
        result = validate_daticert(raw, ctx) if looks_like_daticert(raw) else check(raw, ctx)
        if result.count(Verdict.ERROR):
            exit_code = EXIT_HARNESS  # not judged (or not fully): never reported as a clean pass
        elif result.failed and exit_code == EXIT_OK:
            exit_code = EXIT_FAIL
        reports.append({"file": _shown(path), **result.to_dict()})
        if not as_json:
            summary = ", ".join(f"{n} {v}" for v, n in result.to_dict()["summary"].items())
            click.echo(f"{_shown(path)}: {result.kind} ({summary})")
            for f in result.findings:
                if verbose or f.verdict in _SHOWN:
                    reqs = ",".join(f.requirements)
                    line = f"  {f.verdict:<5} {reqs:<18} {f.message}"
                    if f.expected or f.actual:
                        line += f" [expected: {f.expected or '-'}; actual: {f.actual or '-'}]"
                    if f.decision:
                        line += f" ({f.decision})"
                        decisions_named.add(f.decision)
                    click.echo(_printable(line))
    if decisions_named and not as_json:  # say what (D16) means, once
        named = sorted(decisions_named, key=lambda d: int(d[1:]) if d[1:].isdigit() else 0)
        click.echo(f"{', '.join(named)}: the reading of an open point the verdict rests on; "
                   f"`pec-conformance explain {named[0]}` prints it (docs/decisions.md)")
    for note in setup_notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        click.echo(json.dumps(_printable({"version": __version__, "exit_code": exit_code, "files": reports}),
                              indent=2, ensure_ascii=False))
    sys.exit(exit_code)


# -------------------------------------------------------------------------------------------- list


def latest_report(folder: Path = Path("reports")) -> Path | None:
    """The newest report.json under the default output folder, if any."""
    found = sorted(folder.glob("*/report.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return found[-1] if found else None


def requirement_coverage(report: dict | None = None) -> list[dict]:
    """Each requirement with the checks and scenarios that cite it and, given a run's report, what that run
    said of it (`exercised`: a check gave PASS or FAIL, not SKIP)."""
    from .engine.core import SCENARIOS
    from .scenarios import __name__ as _registered  # noqa: F401

    cited: dict[str, list[str]] = {}
    for spec in REGISTRY:
        for rid in spec.requirements:
            cited.setdefault(rid, []).append(spec.name)
    in_scenarios: dict[str, list[str]] = {}
    for sc in SCENARIOS.values():
        for rid in sc.requirements:
            in_scenarios.setdefault(rid, []).append(sc.id)
    from .reference.faults import FAULTS

    proving: dict[str, list[str]] = {}  # the reference faults that turn the requirement FAIL (bench/kill_matrix.py)
    for fault in FAULTS:
        for rid in fault.requirements:
            proving.setdefault(rid, []).append(fault.name)
    last = {r["id"]: r for r in report["requirements"]} if report else {}
    rows = []
    for r in load_catalogue():
        row = {
            "id": r.id, "group": r.group, "level": r.level, "observed": list(r.observed),
            "audit_only": r.audit_only, "long_timer": r.long_timer, "rfc": list(r.rfc),
            "decisions": list(r.decisions), "statement": r.statement, "checks": cited.get(r.id, []),
            "scenarios": in_scenarios.get(r.id, []), "faults": proving.get(r.id, []),
        }
        if report is not None:
            seen = last.get(r.id, {})
            row["last_run"] = seen.get("verdict")
            row["exercised"] = seen.get("verdict") in ("PASS", "FAIL", "WARN", "XFAIL", "XPASS")
        rows.append(row)
    return rows


@main.command("list")
@click.option("--requirements", "what", flag_value="requirements", default=True,
              help="The requirement catalogue with the checks that cite each requirement.")
@click.option("--checks", "what", flag_value="checks", help="The validator's checks.")
@click.option("--scenarios", "what", flag_value="scenarios", help="The scripted scenarios.")
@click.option("--report", "report_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The run whose verdicts to show (default: the newest reports/*/report.json).")
@click.option("--json", "as_json", is_flag=True)
def list_(what, report_path, as_json):
    """List requirements (default), checks or scenarios."""
    if what == "scenarios":
        from .engine.core import SCENARIOS
        from .scenarios import __name__ as _registered  # noqa: F401

        rows = [{"id": s.id, "family": s.family, "title": s.title, "story": s.story,
                 "requirements": list(s.requirements), "needs": list(s.needs), "timers": s.timers}
                for s in SCENARIOS.values()]
        if as_json:
            click.echo(json.dumps({"scenarios": rows, "total": len(rows)}, indent=2, ensure_ascii=False))
        else:
            for row in rows:
                click.echo(f"{row['id']:<40} {','.join(row['requirements'])}\n    {row['story']}")
        return
    if what == "checks":
        rows = [{"name": s.name, "requirements": list(s.requirements), "description": s.description}
                for s in REGISTRY]
        if as_json:
            click.echo(json.dumps({"checks": rows}, indent=2))
        else:
            for row in rows:
                click.echo(f"{row['name']:<32} {','.join(row['requirements'])}\n    {row['description']}")
        return
    report = None
    report_path = report_path or latest_report()
    if report_path is not None:
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail_usage(f"{report_path}: {exc}")
    rows = requirement_coverage(report)
    if as_json:
        out = {"requirements": rows, "total": len(rows), "cited": sum(1 for r in rows if r["checks"]),
               "in_scenarios": sum(1 for r in rows if r["scenarios"]),
               "report": str(report_path) if report_path else None}
        if report is not None:
            out["exercised"] = sum(1 for r in rows if r["exercised"])
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for r in rows:
        tags = "audit-only" if r["audit_only"] else ("long-timer" if r["long_timer"] else ",".join(r["observed"]))
        checks = ", ".join(r["checks"]) or "-"
        last = f"  last run: {r['last_run']}" if r.get("last_run") else ""
        faults = ", ".join(r["faults"]) or "-"
        click.echo(f"{r['id']:<7} {r['level']:<9} {tags:<28} {r['statement']}\n{'':17}checks: {checks}{last}"
                   f"\n{'':17}proving faults: {faults}")
    cited = sum(1 for r in rows if r["checks"])
    click.echo(f"\n{cited} of {len(rows)} requirements cited by a validator check "
               "(the rest need a flow, a counterpart or an audit).")


# ----------------------------------------------------------------------------------------- explain


def _known_id(ctx, param, value: str) -> str:
    from .catalogue import explain as explain_text

    if explain_text(value) is None:
        raise click.BadParameter(f"{value!r} is neither a requirement (e.g. FMT-04) nor a decision (D1 ... D36)")
    return value


@main.command()
@click.argument("ident", metavar="ID", callback=_known_id)
def explain(ident: str):
    """Print a requirement (e.g. FMT-04) or a reading of an open point (e.g. D33) as docs/ states it."""
    from .catalogue import explain as explain_text

    click.echo(explain_text(ident))


# --------------------------------------------------------------------------------------------- pki


@main.group()
def pki() -> None:
    """Test PKI: CA, CRL, provider certificates and the providers index."""


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--provider", "providers", multiple=True, required=True,
              help="Provider name as in the index (providerName). Repeatable.")
@click.option("--domain", "domains", multiple=True, required=True,
              help="PEC domain(s); with several providers, one --domain per provider in the same order, "
                   "comma-separated for several domains of one provider.")
@click.option("--receipt-mailbox", "mailboxes", multiple=True,
              help="mailReceipt per provider, in order (default ricevute@<first domain>).")
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
@click.option("--forgery/--no-forgery", default=True, show_default=True,
              help="Also write the first provider's forgery keys (expired, not yet valid, revoked, foreign, "
                   "renewed), with the revoked one in the CRL: what the counterpart needs to test a target.")
def pki_init(directory: Path, providers, domains, mailboxes, force, forgery):
    """Write a test CA with its CRL, provider keys and certificates, and the signed providers index."""
    from .pec.pki import ProviderSpec, write_forgery_material, write_pki_directory

    if directory.exists() and any(directory.iterdir()) and not force:
        _fail_usage(f"{directory} is not empty (use --force)")
    if len(providers) == 1:
        grouped = [[d for item in domains for d in item.split(",") if d]]
    elif len(domains) == len(providers):
        grouped = [[d for d in item.split(",") if d] for item in domains]
    else:
        _fail_usage("give one --domain per --provider (comma-separated for several domains)")
    if mailboxes and len(mailboxes) != len(providers):
        _fail_usage("give one --receipt-mailbox per --provider, or none")
    specs = [ProviderSpec(name, tuple(doms), mailboxes[i] if mailboxes else None)
             for i, (name, doms) in enumerate(zip(providers, grouped, strict=True))]
    layout = write_pki_directory(directory, specs)
    if forgery:
        write_forgery_material(directory, layout, specs[0].name)
    click.echo(f"test PKI written to {directory}")
    for label, path in sorted(layout.paths.items()):
        click.echo(f"  {label:<26} {path}")
    for p in layout.providers:
        click.echo(f"  provider {p.provider_name}: {', '.join(p.domains)}; service address {p.service_address}; "
                   f"mailReceipt {p.receipt_mailbox}")


@pki.command("revoke")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("certificate")
def pki_revoke(directory: Path, certificate: str):
    """Revoke a certificate (PEM path or serial number) and re-sign the CRL."""
    from .pec.pki import revoke_in_directory

    try:
        target: Path | int = int(certificate, 0) if certificate.isdigit() or certificate.startswith("0x") \
            else Path(certificate)
        serial = revoke_in_directory(directory, target)
    except (OSError, ValueError, KeyError) as exc:
        _fail_usage(f"cannot revoke {certificate} in {directory}: {exc}")
    click.echo(f"revoked serial {serial:#x}; CRL re-signed in {directory}")


# --------------------------------------------------------------------------------------------- run


@main.command()
@click.option("--target", "target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Target profile (TOML). Without it the built-in reference provider is the target.")
@click.option("--counterpart-pki", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --target: the `pki init` folder whose first provider the counterpart plays.")
@click.option("--reference-fault", "faults", multiple=True, help="Switch a fault on in the built-in target.")
@click.option("--scenario", "patterns", multiple=True, help="Run only scenarios matching this glob (repeatable).")
@click.option("--exclude", "excludes", multiple=True, help="Skip scenarios matching this glob (repeatable).")
@click.option("--expectations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Expected verdicts with reasons (TOML): they become XFAIL; one that does not happen, XPASS.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default reports/<UTC timestamp>).")
@click.option("--timeout-multiplier", type=click.FloatRange(min=0, min_open=True, max=1000), default=1.0,
              show_default=True, help="Scale every deadline (slow targets); above 0.")
@click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Independent scenarios run in parallel (1 to 64).")
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="After the run, keep only the newest N runs in the default output folder (reports/).")
@click.option("--quiet", is_flag=True, help="No live progress; one summary line (for CI).")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Overall deadline in seconds (default: from the scenarios, the jobs and the target's timers). "
                   "When it passes, or on Ctrl-C / SIGTERM, the reports are written with the scenarios not "
                   "finished marked BLOCKED (not run), and the exit code is 2.")
@click.option("--preflight/--no-preflight", "preflight", default=True, show_default=True,
              help="Check the target first; scenarios needing what is broken are BLOCKED (see `preflight`).")
@click.option("--long-timers", is_flag=True,
              help="With --target: start the 12 h / 24 h scenarios on the target's real timers, record what is "
                   "awaited, exit; judge later with `resume`.")
@click.option("--counterpart-state", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --long-timers: the state folder of the running `counterpart serve`.")
def run(target, counterpart_pki, faults, patterns, excludes, expectations, out, timeout_multiplier, jobs, keep,
        quiet, max_time, preflight, long_timers, counterpart_state):
    """Run the scenarios against a target (default: the built-in reference provider) and write the reports."""
    from .engine import core
    from .engine.execute import execute
    from .engine.profile import ProfileError, load_profile
    from .engine.results import build_report
    from .reference.faults import CATALOGUE
    from .report.render import write_reports
    from .runner import builtin_placeholder, builtin_target, profile_target, timestamp
    from .scenarios import __name__ as _scenarios  # noqa: F401  (registers the scenarios)

    unknown = [f for f in faults if f not in CATALOGUE]
    if unknown:
        _fail_usage(f"unknown fault(s): {', '.join(unknown)} (see `pec-conformance reference faults`)")
    if target and faults:
        _fail_usage("--reference-fault applies to the built-in target only")
    if target and not counterpart_pki:
        _fail_usage("--target needs --counterpart-pki (the `pki init` folder the target's operator loaded)")
    try:
        expected = core.load_expectations(expectations) if expectations else []
    except ValueError as exc:
        _fail_usage(str(exc))
    specs = core.select(list(patterns), list(excludes))
    if not specs:
        _fail_usage("no scenario matches")
    target_profile = None
    if target:  # every file the profile names is checked before anything is written
        try:
            target_profile = load_profile(target)
        except ProfileError as exc:
            _fail_usage(str(exc))
        missing = target_profile.missing_files()
        if missing:
            _fail_usage(f"{target}: not found: {'; '.join(missing)}")
    if long_timers or counterpart_state:
        _start_long_timers(target, counterpart_pki, counterpart_state, out, timeout_multiplier)
        return
    if keep is not None and out is not None:
        _fail_usage("--keep prunes the default output folder (reports/); it does not go with --out")
    default_out = out is None
    out = out or Path("reports") / timestamp()
    fresh_out = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail_usage(f"cannot write the report folder {out}: {exc.strerror or exc}")
    started = time.time()
    try:
        if target:
            stage = profile_target(target_profile, out, timeout_multiplier, counterpart_pki)
        else:
            stage = builtin_target(out, list(faults), timeout_multiplier)
        done = execute(stage, specs, expected, jobs=jobs, multiplier=timeout_multiplier, max_time=max_time,
                       progress=_progress(quiet, len(specs)), echo=lambda line: None if quiet else click.echo(line),
                       preflight=preflight)
        results = done.results
        profile = done.profile or (load_profile(target) if target else builtin_placeholder())
    except ProfileError as exc:
        if fresh_out and not any(p.is_file() for p in out.rglob("*")):
            import shutil

            shutil.rmtree(out, ignore_errors=True)  # no empty evidence folder left behind
        _fail_usage(str(exc))
    report = build_report(results, profile, started=started, finished=time.time(), command=sys.argv,
                          multiplier=timeout_multiplier, jobs=jobs, faults=list(faults), stopped=done.stopped)
    paths = write_reports(report, out)
    summary = report["summary"]
    counts = ", ".join(f"{n} {v}" for v, n in summary["scenarios"].items() if n)
    click.echo(f"{len(results)} scenarios: {counts}; requirements: "
               + ", ".join(f"{n} {v}" for v, n in summary["requirements"].items() if n))
    click.echo(f"reports: {', '.join(str(p) for p in paths.values())}")
    if keep is not None and default_out:
        for old in prune_runs(out.parent, keep):
            click.echo(f"removed old run {old}")
    if done.stopped:
        click.echo(f"stopped: {done.stopped}; the report is partial", err=True)
        sys.exit(EXIT_HARNESS)
    sys.exit(summary["exit_code"])


def prune_runs(folder: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` runs (folders holding a report.json, by name: UTC timestamps sort
    in time order) from the default output folder; return what was removed. Anything else is left alone."""
    import shutil

    runs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "report.json").is_file())
    removed = runs[:-keep] if keep > 0 else runs
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


@main.command()
@click.option("--target", "target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Target profile (TOML). Without it the built-in reference provider is checked.")
@click.option("--counterpart-pki", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --target: the `pki init` folder whose first provider the counterpart plays.")
@click.option("--timeout-multiplier", type=click.FloatRange(min=0, min_open=True, max=1000), default=1.0,
              show_default=True, help="Scale every deadline (slow targets); above 0.")
def preflight(target, counterpart_pki, timeout_multiplier):
    """Check what a run needs of the target, alone: endpoints, STARTTLS, AUTH and the mailbox of each
    user, one correct message reaching the counterpart. Exit 0 all fine, 1 a correct message refused or
    lost (ACC-17), 2 anything else not working."""
    import shutil
    import tempfile

    from .engine.preflight import run_preflight
    from .engine.profile import ProfileError, load_profile
    from .runner import builtin_target, profile_target

    if target and not counterpart_pki:
        _fail_usage("--target needs --counterpart-pki (the `pki init` folder the target's operator loaded)")
    scratch = Path(tempfile.mkdtemp(prefix="pec-preflight-"))  # evidence is not kept: nothing is judged
    try:
        stage = (profile_target(load_profile(target), scratch, timeout_multiplier, counterpart_pki) if target
                 else builtin_target(scratch, [], timeout_multiplier))
        with stage as world:
            result = run_preflight(world)
    except ProfileError as exc:
        _fail_usage(str(exc))
    except KeyboardInterrupt:
        click.echo("preflight interrupted", err=True)
        sys.exit(EXIT_HARNESS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in result.lines:
        click.echo(line)
    verdicts = {str(f.verdict) for f in result.result.findings}
    sys.exit(EXIT_HARNESS if "ERROR" in verdicts else EXIT_FAIL if "FAIL" in verdicts else EXIT_OK)


def _start_long_timers(target, counterpart_pki, state, out, multiplier) -> None:
    from . import longtimers
    from .engine.profile import ProfileError
    from .runner import timestamp

    if not (target and counterpart_pki and state):
        _fail_usage("--long-timers needs --target, --counterpart-pki and --counterpart-state (`counterpart serve`)")
    out = out or Path("reports") / timestamp()
    out.mkdir(parents=True, exist_ok=True)
    try:
        waiting = longtimers.start(target, counterpart_pki, state, out, multiplier)
    except (ProfileError, ValueError) as exc:
        _fail_usage(str(exc))
    started = [e for e in waiting["scenarios"] if e.get("record")]
    for e in waiting["scenarios"]:
        bad = [f for f in e["findings"] if f["verdict"] in ("FAIL", "ERROR", "BLOCKED")]
        state_line = f"waiting for {e['awaiting']}" if e.get("record") else "not started: " + "; ".join(
            f"{f['verdict']} {f['message']}" for f in bad[:2])
        click.echo(f"{e['id']}: {state_line}")
    due = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(waiting["due"]))
    click.echo(f"{len(started)} of {len(waiting['scenarios'])} started; due {due}; then: "
               f"pec-conformance resume {out}")
    sys.exit(EXIT_OK if len(started) == len(waiting["scenarios"]) else EXIT_HARNESS)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="If the awaited notices are not due yet, wait until they are.")
def resume(run_dir: Path, wait: bool):
    """Complete a `run --long-timers`: collect what arrived, judge it, write the reports."""
    from . import longtimers
    from .engine.profile import ProfileError
    from .engine.results import build_report
    from .report.render import write_reports

    started = time.time()
    try:
        results, profile, waiting = longtimers.resume(run_dir, wait=wait)
    except longtimers.NotDue as exc:
        _fail_usage(f"{run_dir}: the awaited notices are due {exc}; resume then (or add --wait)")
    except ProfileError as exc:
        _fail_usage(str(exc))
    report = build_report(results, profile, started=waiting.get("started", started), finished=time.time(),
                          command=sys.argv, multiplier=float(waiting["multiplier"]), jobs=1, faults=[])
    paths = write_reports(report, run_dir)
    summary = report["summary"]
    click.echo(f"{len(results)} scenarios: " + ", ".join(f"{n} {v}" for v, n in summary["scenarios"].items() if n))
    click.echo(f"reports: {', '.join(str(p) for p in paths.values())}")
    sys.exit(summary["exit_code"])


@main.group()
def counterpart() -> None:
    """The counterpart and the ordinary domain as a long-lived service (real timers)."""


@counterpart.command("serve")
@click.option("--profile", "profile_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The target profile: where the counterpart and the ordinary domain listen.")
@click.option("--counterpart-pki", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The `pki init` (or `target init`) folder whose first provider the counterpart plays.")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The state folder (created if missing): messages, journal, behaviours.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the listening addresses here once up.")
def counterpart_serve(profile_path: Path, counterpart_pki: Path, state_dir: Path, ready_file):
    """Run the counterpart and the ordinary domain until SIGTERM or SIGINT, their state on disk."""
    from .engine.profile import ProfileError, load_profile
    from .longtimers import serve_counterpart

    try:
        sys.exit(serve_counterpart(load_profile(profile_path), counterpart_pki, state_dir, ready_file=ready_file))
    except (ProfileError, OSError) as exc:
        _fail_usage(str(exc))


def _progress(quiet: bool, total: int):
    """Live progress with rich: scenario, state, verdicts so far; nothing with --quiet."""
    if quiet:
        return None
    from rich.console import Console

    console = Console(stderr=True)
    lock = threading.Lock()  # scenarios finish on several threads: one line at a time, counters in order
    done: dict[str, int] = {}
    colours = {"PASS": "green", "FAIL": "red", "ERROR": "magenta", "WARN": "yellow", "SKIP": "dim",
               "XFAIL": "cyan", "XPASS": "bold red", "BLOCKED": "yellow"}

    def report(scenario_id: str, state: str, result) -> None:
        with lock:
            if result is None:  # started, not finished
                console.print(f"[dim]RUNNING[/dim] {scenario_id}")
                return
            done[state] = done.get(state, 0) + 1
            so_far = " ".join(f"{v}:{n}" for v, n in sorted(done.items()))
            console.print(f"[{colours.get(state, 'white')}]{state:<7}[/] {scenario_id} "
                          f"({result.duration:.1f} s)  [dim]{sum(done.values())}/{total} {so_far}[/dim]")

    return report


@main.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def diff(old: Path, new: Path, as_json: bool):
    """Regressions, fixes, new and removed checks between two report.json files (volatile fields ignored)."""
    from .report.diff import diff_exit_code, diff_reports, format_diff
    from .report.model import ReportError, load_report

    try:
        d = diff_reports(load_report(old), load_report(new))
    except ReportError as exc:
        _fail_usage(str(exc))
    click.echo(json.dumps(d, indent=2) if as_json else format_diff(d))
    sys.exit(diff_exit_code(d))


# --------------------------------------------------------------------------------------- reference


@main.group()
def reference() -> None:
    """The reference PEC provider: a complete gestore on loopback, with fault switches."""


@reference.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Provider configuration (TOML).")
@click.option("--fault", "faults", multiple=True, help="Switch a fault on (repeatable; see `reference faults`).")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write 'access incoming' addresses here once listening.")
def reference_serve(config_path: Path, faults, ready_file):
    """Run a reference provider until SIGTERM or SIGINT."""
    from .reference.config import ConfigError
    from .reference.faults import UnknownFault
    from .reference.provider import serve

    try:
        sys.exit(serve(config_path, list(faults) or None, ready_file=ready_file))
    except (ConfigError, UnknownFault, OSError) as exc:
        _fail_usage(str(exc))


@reference.command("faults")
@click.option("--json", "as_json", is_flag=True)
def reference_faults(as_json):
    """List the fault catalogue: name, point, requirements broken, expected verdict."""
    from .reference.faults import FAULTS

    rows = [{"name": f.name, "point": f.point, "requirements": list(f.requirements), "verdict": f.verdict,
             "description": f.description, "kinds": [str(k) for k in f.kinds], "flow": f.flow} for f in FAULTS]
    if as_json:
        click.echo(json.dumps({"faults": rows, "total": len(rows)}, indent=2))
        return
    click.echo(f"{'FAULT':<34} {'POINT':<9} {'VERDICT':<7} {'REQUIREMENTS':<16} DESCRIPTION")
    for r in rows:
        click.echo(f"{r['name']:<34} {r['point']:<9} {r['verdict']:<7} {','.join(r['requirements']):<16} "
                   f"{r['description']}")
    click.echo(f"\n{len(rows)} faults")


@reference.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
@click.option("--for", "for_profile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead: one provider that is the target this profile describes, for `run --target`.")
@click.option("--counterpart-pki", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --for: the counterpart's `pki init` folder whose index, CA and CRL the provider loads.")
def reference_init(directory: Path, force: bool, for_profile, counterpart_pki):
    """Write a sandbox of two providers (test PKI, index, TLS, users, routes) ready for `reference serve`."""
    from .reference.deploy import DEFAULT_PLANS, write_deployment

    if directory.exists() and any(directory.iterdir()) and not force:
        _fail_usage(f"{directory} is not empty (use --force)")
    if for_profile or counterpart_pki:
        _reference_init_for(directory, for_profile, counterpart_pki)
        return
    paths = write_deployment(directory)
    click.echo(f"sandbox written to {directory}")
    for path, plan in zip(paths, DEFAULT_PLANS, strict=True):
        click.echo(f"  {plan.name}: pec-conformance reference serve --config {path}")
        for user, password in plan.users.items():
            click.echo(f"      user {user} password {password}")


def _reference_init_for(directory: Path, profile_path: Path | None, counterpart_pki: Path | None) -> None:
    from .engine.profile import ProfileError, load_profile
    from .reference.deploy import SandboxError, sandbox_mismatches, write_target_sandbox

    if not (profile_path and counterpart_pki):
        _fail_usage("--for and --counterpart-pki go together")
    try:
        profile = load_profile(profile_path)
        config = write_target_sandbox(directory, profile, counterpart_pki)
    except (ProfileError, SandboxError) as exc:
        _fail_usage(str(exc))
    click.echo(f"sandbox target {profile.name} written to {directory}; start it with:\n"
               f"  pec-conformance reference serve --config {config}")
    for line in sandbox_mismatches(profile, directory, config):
        click.echo(f"  note: {profile_path} should say {line}", err=True)


@main.group()
def target() -> None:
    """Getting a provider under test ready for the suite."""


@target.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Your providerName (default: the example's).")
@click.option("--domain", default=None, help="Your PEC domain (default: the example's).")
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
def target_init(directory: Path, name: str | None, domain: str | None, force: bool):
    """Write the counterpart's PKI, a commented profile to fill in and a checklist of what to load."""
    from . import targetkit

    if directory.exists() and any(directory.iterdir()) and not force:
        _fail_usage(f"{directory} is not empty (use --force)")
    kit = targetkit.write_kit(directory, name=name or targetkit.DEFAULT_NAME,
                              domain=domain or targetkit.DEFAULT_DOMAIN)
    click.echo(f"written to {directory}:\n  {kit.pki}/  the counterpart's PKI (index, CA, CRL, keys)\n"
               f"  {kit.profile}  the target profile: fill in your deployment\n"
               f"  {kit.checklist}  what to load into the provider under test")


# ------------------------------------------------------------------------------------------ sample


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--digest", type=click.Choice(["sha256", "sha1"]), default="sha256",
              help="Digest of the signatures (sha1 makes legacy-style messages).")
@click.option("--force", is_flag=True, help="Write into a non-empty directory.")
def sample(directory: Path, digest: str, force: bool):
    """Build one message of each of the 14 kinds with a fresh test PKI, plus its CA, CRL and index."""
    from cryptography.hazmat.primitives import serialization

    from .pec.samples import build_all_kinds, make_world

    if directory.exists() and any(directory.iterdir()) and not force:
        _fail_usage(f"{directory} is not empty (use --force)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail_usage(f"cannot write {directory}: {exc.strerror or exc}")
    world = make_world()
    samples = build_all_kinds(world, digest=digest)
    for kind, raw in samples.messages.items():
        (directory / f"{kind}.eml").write_bytes(raw)
    (directory / "original").mkdir(exist_ok=True)
    (directory / "original" / "submitted.eml").write_bytes(samples.original)
    (directory / "original" / "carried.eml").write_bytes(samples.carried_original)
    (directory / "ca.pem").write_bytes(world.ca.certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "crl.pem").write_bytes(world.crl.public_bytes(serialization.Encoding.PEM))
    (directory / "providers.ldif").write_bytes(world.index_ldif)
    click.echo(f"{len(samples.messages)} messages written to {directory}; validate them with:\n"
               f"  pec-conformance validate {directory}/*.eml --index {directory}/providers.ldif "
               f"--ca {directory}/ca.pem --crl {directory}/crl.pem --original {directory}/original/carried.eml")


from .load.cli import load_command, probe_command  # noqa: E402  (the load package's own commands)

main.add_command(load_command)
main.add_command(probe_command)


if __name__ == "__main__":  # pragma: no cover
    main()

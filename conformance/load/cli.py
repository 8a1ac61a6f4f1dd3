"""The `load` and `probe` commands (registered on the main command group by `conformance.cli`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from .report import ThresholdError, parse_duration, parse_loss


def _parsed(parse):
    """A click callback turning an option's text into a value with `parse` (None stays None)."""
    def callback(ctx, param, value):
        try:
            return None if value is None else parse(value)
        except ThresholdError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


_duration, _loss = _parsed(parse_duration), _parsed(parse_loss)


def _weights(ctx, param, value: str) -> dict[str, float]:
    out = {}
    for item in value.split(","):
        name, _, weight = item.partition("=")
        if name.strip() not in ("completa", "breve", "sintetica"):
            raise click.BadParameter(f"unknown receipt variant {name!r} (completa, breve, sintetica)")
        try:
            out[name.strip()] = float(weight or 1)
        except ValueError:
            raise click.BadParameter(f"not a weight: {weight!r}") from None
    return out


def _sizes(ctx, param, value: str) -> list[int]:
    units = {"k": 1000, "m": 1_000_000}
    try:
        return [int(float(v.strip().lower().rstrip("km")) * units.get(v.strip().lower()[-1:], 1))
                for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"not a list of sizes: {value!r} (write 2k,100k)") from None


@click.command("load")
@click.option("--target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Target profile (TOML); default: the built-in reference provider.")
@click.option("--counterpart-pki", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --target: the counterpart's PKI (from `pki init` or `target init`).")
@click.option("--users", type=click.IntRange(1), default=10, show_default=True, help="Simulated users.")
@click.option("--rate", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Messages per second over all users (0: each user sends as fast as the target answers).")
@click.option("--time", "run_time", default="10s", show_default=True, callback=_duration, help="How long users send.")
@click.option("--drain", default="30s", show_default=True, callback=_duration,
              help="How long to wait for missing receipts after the users stop; still missing: lost.")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Local Locust worker processes.")
@click.option("--master", "as_master", is_flag=True, help="Also accept Locust workers from other machines.")
@click.option("--expect-workers", type=click.IntRange(1), help="With --master: workers to wait for in all.")
@click.option("--master-bind-host", default="127.0.0.1", show_default=True)
@click.option("--master-port", type=click.IntRange(0, 65535), default=0, help="Locust master port (0: a free one).")
@click.option("--worker", "as_worker", is_flag=True, help="Run one Locust worker for a master elsewhere, only.")
@click.option("--master-host", default="127.0.0.1", show_default=True, help="With --worker: the master.")
@click.option("--counterparts", type=click.IntRange(1), default=1, show_default=True,
              help="Counterpart processes answering the target (one counterpart domain each).")
@click.option("--local-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of recipients at the target itself (the rest at the counterpart).")
@click.option("--recipients", type=click.IntRange(1), default=1, show_default=True, help="Recipients per message.")
@click.option("--variants", default="completa=1,breve=1,sintetica=1", show_default=True, callback=_weights,
              help="Receipt variants asked for, with weights.")
@click.option("--sizes", default="2k", show_default=True, callback=_sizes, help="Attachment sizes, one drawn per message.")
@click.option("--reference-fault", "faults", multiple=True, help="Switch a fault on in the built-in target.")
@click.option("--validate-every", type=click.IntRange(1), default=20, show_default=True,
              help="Judge one receipt the target made in this many (the validator must not be the bottleneck).")
@click.option("--max-p95-accept", callback=_duration, help="Exit 1 when the p95 acceptance latency is above (e.g. 30s).")
@click.option("--max-p95-delivery", callback=_duration, help="Exit 1 when the p95 delivery latency is above.")
@click.option("--max-loss", callback=_loss, help="Exit 1 when more messages are lost (a count, or a share: 0.5%).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder (default reports/load-<UTC>).")
@click.option("--quiet", is_flag=True)
def load_command(target, counterpart_pki, users, rate, run_time, drain, workers, as_master, expect_workers, master_bind_host, master_port,
                 as_worker, master_host, counterparts, local_share, recipients, variants, sizes, faults,
                 validate_every, max_p95_accept, max_p95_delivery, max_loss, out, quiet):
    """Load a target (default: the built-in one) with PEC traffic from Locust users; a load report and
    an exit code."""
    if as_worker:
        if not master_port:
            raise click.UsageError("--worker needs --master-port")
        sys.exit(subprocess.call([sys.executable, "-m", "conformance.load.swarm", "worker",
                                  "--master-host", master_host, "--master-port", str(master_port)]))
    from ..reference.faults import CATALOGUE
    from ..runner import timestamp
    from .run import LoadOptions, run_load

    unknown = [f for f in faults if f not in CATALOGUE]
    if unknown:
        raise click.UsageError(f"unknown reference fault(s): {', '.join(unknown)}")
    if target is not None and (faults or counterpart_pki is None):
        raise click.UsageError("--target needs --counterpart-pki and takes no --reference-fault")
    if not as_master and expect_workers is not None:
        raise click.UsageError("--expect-workers goes with --master")
    if not as_master and workers < 1:
        raise click.UsageError("--workers 0 needs --master and workers from elsewhere")
    opts = LoadOptions(out=out or Path("reports") / f"load-{timestamp()}", users=users, rate=rate, run_time=run_time,
                       drain=drain, workers=workers, expect_workers=expect_workers if as_master else None,
                       master_bind=master_bind_host, master_port=master_port, counterparts=counterparts,
                       local_share=local_share, recipients=recipients, variants=variants, sizes=sizes,
                       faults=list(faults), validate_every=validate_every, quiet=quiet, target=target,
                       counterpart_pki=counterpart_pki,
                       thresholds={"max_p95_accept": max_p95_accept, "max_p95_delivery": max_p95_delivery,
                                   "max_loss": max_loss})
    report = run_load(opts)
    t, lat = report["totals"], report["latency"]
    click.echo(f"{t['submitted']} submitted, {t['complete']} complete, {t['lost']} lost "
               f"({100 * t['loss_ratio']:.1f} %), {t['refused'] + t['failed']} submission errors; "
               f"{report['throughput']['submitted_per_s']} messages/s")
    for kind in ("accettazione", "envelope", "consegna"):
        v = lat[kind]
        if v["count"]:
            click.echo(f"  {kind:13s} p50 {v['p50']:.3f} s  p95 {v['p95']:.3f} s  p99 {v['p99']:.3f} s  "
                       f"max {v['max']:.3f} s  ({v['count']})")
    for th in report["thresholds"]:
        click.echo(f"  {'OK' if th['ok'] else 'BROKEN'}: {th['name']} {th['value']} (limit {th['limit']})")
    for e in report["harness_errors"]:
        click.echo(f"harness error: {e}", err=True)
    click.echo(f"report: {opts.out / 'load.html'}")
    sys.exit(report["exit_code"])


@click.command("probe")
@click.option("--target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Target profile (TOML); default: the built-in reference provider.")
@click.option("--counterpart-pki", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --target: the counterpart's PKI (from `pki init`).")
@click.option("--every", default="5m", show_default=True, callback=_duration, help="Interval between transactions.")
@click.option("--count", type=click.IntRange(1), help="Stop after this many transactions.")
@click.option("--duration", default="24h", show_default=True, callback=_duration, help="Stop after this long.")
@click.option("--within", default="60s", show_default=True, callback=_duration,
              help="The agreed term: how long a receipt is awaited.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=Path("reports/probe.jsonl"),
              show_default=True, help="JSON lines, appended to; an existing file is resumed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Evidence folder (default beside --file).")
def probe_command(target, counterpart_pki, every, count, duration, within, path, out):
    """One transaction per interval; availability and acceptance latency over the file's window (AVL-01)."""
    from ..engine.profile import ProfileError, load_profile
    from ..runner import builtin_target, profile_target
    from .probe import run_probe

    out = out or path.parent / "probe-evidence"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def show(r: dict) -> None:
        state = "available" if r["ok"] else f"UNAVAILABLE ({r['error']})"
        click.echo(f"#{r['seq']} {state}; acceptance {r['accept_s']} s, delivery {r['delivery_s']} s"
                   + (f"; FAIL {', '.join(r['fail'])}" if r["fail"] else ""))

    try:
        if target is not None:
            if counterpart_pki is None:
                raise click.UsageError("--target needs --counterpart-pki")
            world_cm = profile_target(load_profile(target), out, 1.0, counterpart_pki)
        else:
            world_cm = builtin_target(out, [], 1.0)
        with world_cm as world:
            s = run_probe(world, path, every=every, count=count, duration=duration, within=within, stop=stop,
                          on_result=show)
    except ProfileError as exc:
        raise click.UsageError(str(exc)) from None
    acc = s["acceptance"]
    click.echo(f"{s['transactions']} transactions in {path}: availability {s['availability']} % "
               f"({s['available']} available); acceptance p50 {acc['p50']} s, p95 {acc['p95']} s, max {acc['max']} s")
    sys.exit(0 if s["transactions"] and s["available"] == s["transactions"] and not s["with_fail"] else 1)

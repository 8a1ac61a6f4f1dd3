"""Throughput of the full validator against a floor measured in the same run, on one core.

    python bench/validate.py [--rounds N] [--cpu K] [--wall] [--profile]

The messages are the 14 sample kinds (`conformance.pec.samples`), each validated once per round by
`check(raw, ctx)` with a context holding the providers index, the test CA and its CRL. The floor is
the least any validator must do per message, on the same messages: parse the header and MIME tree
with the stdlib (`email.message_from_bytes`, compat32), verify one RSA PKCS#1 v1.5 / SHA-256
signature over the signed attributes with cryptography, and parse the daticert with lxml, starting
from the raw bytes (finding and decoding the signature and the daticert is part of the minimum). A
second figure, "bare primitives", times the three operations alone on inputs extracted before the
clock starts, as a lower bound. Loops are timed in CPU seconds of the process (other work on a busy
machine does not count; --wall for the wall clock). See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import email
import email.policy
import gc
import io
import os
import platform
import pstats
import resource
import sys
import time
from dataclasses import dataclass
from importlib import metadata

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from lxml import etree

from conformance.checks.findings import ValidationContext, Verdict
from conformance.checks.validator import check
from conformance.pec.mime import walk_entity
from conformance.pec.samples import build_all_kinds, make_world
from conformance.pec.smime import split_signed

GOAL_RATE = 500.0  # messages per second
GOAL_RATIO = 0.5  # validator rate / floor rate, both measured in the same run


@dataclass
class FloorInput:
    raw: bytes
    signed_attrs: bytes  # DER of the SignerInfo signed attributes, tagged as SET (0x31)
    signature: bytes
    certificate: x509.Certificate
    daticert: bytes | None  # decoded daticert.xml, None for the anomaly envelope


def floor_input(raw: bytes) -> FloorInput:
    """Pre-extract what the floor needs, outside the timed loop."""
    root = walk_entity(raw)
    signed = split_signed(root)
    content_info = asn1_cms.ContentInfo.load(signed.signature_der)
    signed_data = content_info["content"]
    signer_info = signed_data["signer_infos"][0]
    digest = signer_info["digest_algorithm"]["algorithm"].native
    if digest != "sha256":
        raise SystemExit(f"the floor assumes SHA-256 signatures, got {digest}")
    attrs = bytearray(signer_info["signed_attrs"].dump())
    attrs[0] = 0x31  # stored as [0] IMPLICIT; signed as SET OF
    sid = signer_info["sid"].chosen
    certificate = None
    for choice in signed_data["certificates"]:
        tbs = choice.chosen["tbs_certificate"]
        if tbs["serial_number"].native == sid["serial_number"].native and tbs["issuer"] == sid["issuer"]:
            certificate = x509.load_der_x509_certificate(choice.chosen.dump())
    if certificate is None:
        raise SystemExit("signer certificate not found in a sample message")
    daticert = None
    for node in signed.content_node.walk():
        if (node.filename or "").lower() == "daticert.xml":
            daticert = node.decoded()
    return FloorInput(raw, bytes(attrs), signer_info["signature"].native, certificate, daticert)


_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def floor_from_raw(raw: bytes) -> None:
    """The same minimum, from the raw bytes: what a validator must at least do to reach the three
    operations (find the signature and the daticert in the parsed tree, decode them, read the CMS)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = msg.get_payload()
    signature = parts[1].get_payload(decode=True)
    signer_info = asn1_cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    attrs = bytearray(signer_info["signed_attrs"].dump())
    attrs[0] = 0x31
    certificate = x509.load_der_x509_certificate(
        asn1_cms.ContentInfo.load(signature)["content"]["certificates"][0].chosen.dump())
    certificate.public_key().verify(signer_info["signature"].native, bytes(attrs), PKCS1v15(), hashes.SHA256())
    for part in parts[0].walk():
        if (part.get_filename() or "").lower() == "daticert.xml":
            etree.fromstring(part.get_payload(decode=True), _XML_PARSER)


def floor_one(item: FloorInput) -> None:
    email.message_from_bytes(item.raw, policy=email.policy.compat32)
    item.certificate.public_key().verify(item.signature, item.signed_attrs, PKCS1v15(), hashes.SHA256())
    if item.daticert is not None:
        etree.fromstring(item.daticert, _XML_PARSER)


CLOCK = time.process_time  # CPU seconds of this process: a busy machine's other work does not count


def timed(func, items, rounds: int) -> float:
    gc.collect()
    start = CLOCK()
    for _ in range(rounds):
        for item in items:
            func(item)
    return CLOCK() - start


def versions() -> str:
    names = ("pec-conformance", "cryptography", "asn1crypto", "lxml")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} ?")
    found.append(f"libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}")
    return f"Python {platform.python_version()} ({platform.python_implementation()}); " + ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="passes over the 14 kinds (default 100)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="time each loop this many times, interleaved, and keep the best (default 3)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="core to pin the process to (default: the lowest core currently allowed)")
    parser.add_argument("--wall", action="store_true",
                        help="time with the wall clock instead of the process's CPU time (only on a quiet machine)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the validator loop under cProfile and print the top 25 by cumulative time")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.process_time

    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        cpu = args.cpu if args.cpu is not None else allowed[0]
        os.sched_setaffinity(0, {cpu})
        pinned = f"pinned to CPU {cpu}"
    else:
        pinned = "not pinned (no sched_setaffinity on this platform)"

    world = make_world()
    samples = build_all_kinds(world)
    messages = list(samples.messages.values())
    ctx = ValidationContext(index=world.index, ca_certificates=[world.ca.certificate], crls=[world.crl])
    floor_items = [floor_input(raw) for raw in messages]

    # Warm-up (catalogue, XSD, imports) and a sanity look at what the validator says.
    unexpected = []
    for kind, raw in samples.messages.items():
        result = check(raw, ctx)
        bad = [f for f in result.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]
        if result.kind is not kind or bad:
            unexpected.append(f"{kind}: detected {result.kind}, {len(bad)} FAIL/ERROR")
    for item in floor_items:
        floor_one(item)

    count = len(messages) * args.rounds
    # Interleaved repeats, best of each: other load on the machine only ever makes a loop slower.
    for raw in messages:
        floor_from_raw(raw)
    validator_runs, floor_runs, bare_runs = [], [], []
    for _ in range(args.repeat):
        validator_runs.append(timed(lambda raw: check(raw, ctx), messages, args.rounds))
        floor_runs.append(timed(floor_from_raw, messages, args.rounds))
        bare_runs.append(timed(floor_one, floor_items, args.rounds))
    validator_s, floor_s, bare_s = min(validator_runs), min(floor_runs), min(bare_runs)
    validator_rate = count / validator_s
    floor_rate = count / floor_s
    bare_rate = count / bare_s
    ratio = validator_rate / floor_rate
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    sizes = sorted(len(m) for m in messages)
    print(f"messages          {count} ({len(messages)} kinds x {args.rounds} rounds; "
          f"{sizes[0]}-{sizes[-1]} bytes each), single thread, {pinned}; best of {args.repeat} timings, "
          f"{'wall clock' if args.wall else 'CPU time of the process'}")
    print(f"validator         {validator_s:8.3f} s  {validator_rate:9.1f} msg/s  "
          f"({1000 * validator_s / count:.3f} ms/msg)")
    print(f"floor             {floor_s:8.3f} s  {floor_rate:9.1f} msg/s  ({1000 * floor_s / count:.3f} ms/msg)"
          "  from the raw bytes: stdlib parse, signature and daticert found and decoded, one verify, one lxml parse")
    print(f"bare primitives   {bare_s:8.3f} s  {bare_rate:9.1f} msg/s  ({1000 * bare_s / count:.3f} ms/msg)"
          "  the three operations alone on inputs extracted before the clock starts")
    print(f"ratio             validator/floor = {ratio:.3f} (1/{1 / ratio:.1f}); "
          f"validator/bare primitives = {validator_rate / bare_rate:.3f}")
    print(f"peak RSS          {peak_rss_mib:.1f} MiB")
    print(f"versions          {versions()}")
    rate_ok, ratio_ok = validator_rate >= GOAL_RATE, ratio >= GOAL_RATIO
    print(f"goal              >= {GOAL_RATE:.0f} msg/s: {'met' if rate_ok else 'NOT met'}; "
          f"ratio >= {GOAL_RATIO:g}: {'met' if ratio_ok else 'NOT met'}")
    if unexpected:
        print("warning           the validator did not judge every sample cleanly: " + "; ".join(unexpected))

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            for raw in messages:
                check(raw, ctx)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print("\nvalidator loop under cProfile, top 25 by cumulative time:")
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())

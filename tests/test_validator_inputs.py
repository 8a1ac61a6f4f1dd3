"""What `validate` reads: only regular files, each within a bound, names escaped in every output.

Each hostile input runs the real command in its own process, measured: exit 2, one line saying why,
within 2 s and under 200 MiB of resident memory (that process's own peak, measured by a small parent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.pec.constants import MAX_MESSAGE_BYTES, Kind

SECONDS = 2.0
MIB = 1024 * 1024
RSS_MIB = 200


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    rss_mib: float


#: Runs the command as its own child and writes that child's peak RSS (KiB) to the file named in argv[1].
#: The measuring parent is this small fresh interpreter, never the test process: a child forked from a
#: large pytest process reports the parent's pages in its ru_maxrss before it execs.
_MEASURE = """
import os, sys
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "conformance.cli", *sys.argv[2:]], os.environ)
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(*args: str | bytes, timeout: float = 30.0) -> Outcome:
    """The command in a child process, with that process's own peak RSS (see _MEASURE)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, rss.name, *args], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:  # a hang must not hang the test run
            os.killpg(proc.pid, 9)
            proc.wait()
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        measured = Path(rss.name).read_text().strip()
        return Outcome(proc.returncode, out.read().decode("utf-8"), err.read().decode("utf-8"), seconds,
                       int(measured or 0) / 1024 if measured else float("inf"))


@pytest.fixture(scope="module")
def message(tmp_path_factory, samples) -> Path:
    path = tmp_path_factory.mktemp("msg") / "accettazione.eml"
    path.write_bytes(samples.messages[Kind.ACCETTAZIONE])
    return path


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _zero_link(tmp_path: Path) -> Path:
    path = tmp_path / "zero.eml"
    path.symlink_to("/dev/zero")
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.eml"
    path.mkdir()
    return path


def _sparse(size: int):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / f"sparse-{size}"
        with path.open("wb") as fh:
            fh.truncate(size)
        return path
    return make


# (id, how the path is made, where it goes, words the one line must hold)
CASES = [
    ("fifo-message", _fifo, "message", "FIFO"),
    ("fifo-index", _fifo, "--index", "FIFO"),
    ("fifo-crl", _fifo, "--crl", "FIFO"),
    ("dev-zero-message", _zero_link, "message", "character device"),
    ("dev-zero-index", _zero_link, "--index", "character device"),
    ("dev-zero-ca", _zero_link, "--ca", "character device"),
    ("directory-message", _directory, "message", "directory"),
    ("directory-ca", _directory, "--ca", "directory"),
    ("directory-original", _directory, "--original", "directory"),
    ("oversize-message", _sparse(MAX_MESSAGE_BYTES + 1), "message", "larger than"),
    ("oversize-index-1gib", _sparse(1024 * MIB), "--index", "larger than"),
    ("oversize-crl", _sparse(17 * MIB), "--crl", "larger than"),
]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize(("make", "where", "words"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_refused_with_one_line_quickly_and_small(tmp_path, message, make, where, words):
    bad = make(tmp_path)
    args = [str(bad)] if where == "message" else [str(message), where, str(bad)]
    got = run_measured("validate", *args)
    lines = got.stderr.strip().splitlines()
    assert got.code == 2, (got.code, got.stdout, got.stderr)
    assert len(lines) == 1 and words in lines[0] and str(bad) in lines[0], got.stderr
    assert "Traceback" not in got.stderr + got.stdout
    assert got.seconds < SECONDS, f"took {got.seconds:.2f} s"
    assert got.rss_mib < RSS_MIB, f"peak RSS {got.rss_mib:.0f} MiB"


def test_refused_message_does_not_stop_the_others(tmp_path, message):
    fifo = _fifo(tmp_path)
    got = run_measured("validate", str(fifo), str(message), "--json")
    assert got.code == 2
    report = json.loads(got.stdout)
    assert [("error" in f) for f in report["files"]] == [True, False]
    assert "FIFO" in report["files"][0]["error"]
    assert report["files"][1]["kind"] == "accettazione"


def test_non_utf8_file_name_is_escaped_in_text_and_json(tmp_path, message):
    name = os.fsencode(tmp_path) + b"/fattura-\xff\xfe.eml"
    with open(name, "wb") as fh:
        fh.write(message.read_bytes())
    missing = os.fsencode(tmp_path) + b"/assente-\xe9.eml"
    got = run_measured("validate", "--json", os.fsdecode(name), os.fsdecode(missing))
    report = json.loads(got.stdout)  # valid JSON, strict UTF-8 (decoded above)
    names = [f["file"] for f in report["files"]]
    assert names[0].endswith("fattura-\\xff\\xfe.eml") and names[1].endswith("assente-\\xe9.eml")
    assert report["files"][0]["kind"] == "accettazione"
    text = run_measured("validate", os.fsdecode(name), os.fsdecode(missing))
    assert "fattura-\\xff\\xfe.eml: accettazione" in text.stdout
    assert "assente-\\xe9.eml" in text.stderr and len(text.stderr.strip().splitlines()) == 1
    assert text.code == 2

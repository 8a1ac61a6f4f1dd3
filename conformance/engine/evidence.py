"""The evidence folder: every message in or out and every SMTP transcript, on disk before it is judged.

Layout: `<out>/evidence/<scenario id>/<NNN>-<direction>-<label>.eml` (or `.txt` for transcripts),
numbered in the order they happened. Files are flushed and fsynced when written, so a report can
always be rebuilt from the folder.

Large bodies (an oversize submission is tens of megabytes of repeated base64) are stored once, by
content, gzip-compressed: `<out>/evidence/blobs/<sha256>.eml.gz`, and the numbered name is a hard link
to that blob with `.gz` appended (a copy where links are not possible). `zcat` or any archive tool
opens them; a default run's folder stays a few megabytes instead of sixty.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import threading
from pathlib import Path

from .. import redact

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: Bodies at least this large are stored compressed and by content (smaller ones stay readable as is).
LARGE_BODY = 256 * 1024
BLOBS = "blobs"


def _safe(text: str, limit: int = 60) -> str:
    return _SAFE.sub("-", text).strip("-")[:limit] or "item"


class EvidenceStore:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / "evidence"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._blob_lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def write(self, scenario: str, direction: str, label: str, data: bytes, *, suffix: str = ".eml") -> str:
        """Write and fsync; return the path relative to the output folder (what reports link to).
        Known passwords are scrubbed first (conformance.redact): a target may echo them."""
        data = redact.scrub_bytes(data)
        with self._lock:
            n = self._counters.get(scenario, 0) + 1
            self._counters[scenario] = n
        folder = self.root / _safe(scenario, 100)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{n:03d}-{_safe(direction, 12)}-{_safe(label)}{suffix}"
        if len(data) >= LARGE_BODY:
            path = path.with_name(path.name + ".gz")
            self._link(self._blob(data, suffix), path)
        else:
            _write_synced(path, data)
        return str(path.relative_to(self.out_dir))

    def _blob(self, data: bytes, suffix: str) -> Path:
        """The compressed blob holding `data`, written once however often the same body is stored."""
        blobs = self.root / BLOBS
        blobs.mkdir(exist_ok=True)
        blob = blobs / f"{hashlib.sha256(data).hexdigest()}{suffix}.gz"
        with self._blob_lock:
            if not blob.exists():
                # mtime=0: the same body gives the same compressed bytes in every run
                tmp = blob.with_name(f".{blob.name}.tmp")
                _write_synced(tmp, gzip.compress(data, compresslevel=6, mtime=0))
                os.replace(tmp, blob)
        return blob

    @staticmethod
    def _link(blob: Path, path: Path) -> None:
        try:
            os.link(blob, path)
        except OSError:  # a file system without hard links: a copy of the compressed bytes
            _write_synced(path, blob.read_bytes())

    def transcript(self, scenario: str, label: str, lines: list[str]) -> str:
        return self.write(scenario, "smtp", label, ("\n".join(lines) + "\n").encode("utf-8", "replace"),
                          suffix=".txt")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())

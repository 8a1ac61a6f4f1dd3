"""The evidence folder: every message in or out and every SMTP transcript, on disk before it is judged.

Layout: `<out>/evidence/<scenario id>/<NNN>-<direction>-<label>.eml` (or `.txt` for transcripts),
numbered in the order they happened. Files are flushed and fsynced when written, so a report can
always be rebuilt from the folder.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, limit: int = 60) -> str:
    return _SAFE.sub("-", text).strip("-")[:limit] or "item"


class EvidenceStore:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / "evidence"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def write(self, scenario: str, direction: str, label: str, data: bytes, *, suffix: str = ".eml") -> str:
        """Write and fsync; return the path relative to the output folder (what reports link to)."""
        with self._lock:
            n = self._counters.get(scenario, 0) + 1
            self._counters[scenario] = n
        folder = self.root / _safe(scenario, 100)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{n:03d}-{_safe(direction, 12)}-{_safe(label)}{suffix}"
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return str(path.relative_to(self.out_dir))

    def transcript(self, scenario: str, label: str, lines: list[str]) -> str:
        return self.write(scenario, "smtp", label, ("\n".join(lines) + "\n").encode("utf-8", "replace"),
                          suffix=".txt")

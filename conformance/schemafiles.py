"""Where the suite reads its schemas from (daticert XSD and DTD, report and profile JSON Schemas).

The files live once, in the top-level `schemas/` of the source tree. A built wheel carries a copy
as package data in `conformance/schemas/` (setup.py copies it when the wheel is built); a source
checkout or an editable install reads the top-level folder directly.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "schemas"
_SOURCE = Path(__file__).resolve().parent.parent / "schemas"


def schema_path(name: str) -> Path:
    """The file `name` (e.g. "report.schema.json"), packaged copy first; FileNotFoundError if neither has it."""
    for folder in (_PACKAGED, _SOURCE):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"schema {name!r} is neither in {_PACKAGED} nor in {_SOURCE}")

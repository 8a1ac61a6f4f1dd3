"""Virus scanning: the EICAR test signature built in, a clamd socket when one is configured."""

from __future__ import annotations

import socket
import struct

from ..pec.mime import MimeNode, contains

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Eicar-Test-Signature"


class ScannerError(Exception):
    pass


class Scanner:
    """`scan(raw)` looks at the message as transferred and inside every decoded MIME part, attached
    messages included, since the test signature usually travels as an encoded attachment."""

    def __init__(self, spec: str = "eicar", timeout: float = 30.0):
        self.spec = spec
        self.timeout = timeout

    def scan(self, raw: bytes, root: MimeNode | None = None) -> str | None:
        """The name of the virus found, or None when the message is clean (`root`: the message already cut)."""
        if self.spec.startswith("clamd:"):
            return self._clamd(raw, self.spec.removeprefix("clamd:"))
        return EICAR_NAME if contains(raw, EICAR, root=root) else None

    def _clamd(self, raw: bytes, path: str) -> str | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(path)
                s.sendall(b"zINSTREAM\0")
                for i in range(0, len(raw), 65536):
                    chunk = raw[i:i + 65536]
                    s.sendall(struct.pack("!L", len(chunk)) + chunk)
                s.sendall(struct.pack("!L", 0))
                reply = b""
                while not reply.endswith(b"\0"):
                    data = s.recv(4096)
                    if not data:
                        break
                    reply += data
        except OSError as exc:
            raise ScannerError(f"clamd at {path}: {exc}") from None
        text = reply.rstrip(b"\0").decode("ascii", "replace")
        if text.endswith("FOUND"):
            return text.split(":", 1)[-1].removesuffix("FOUND").strip() or "virus"
        if text.endswith("OK"):
            return None
        raise ScannerError(f"clamd answered {text!r}")

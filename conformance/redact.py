"""Passwords never leave the run: whatever a target sends back is scrubbed of them before it is written.

A target may echo what it was sent (`535 5.7.8 Wrong password <password>`, the AUTH blob in an
error, a login reply, a message in the mailbox). The passwords of the profile's mailboxes are
registered once, when the run's world is set up and again where a client logs in with one; every
evidence file and every report string passes through :func:`scrub_bytes` / :func:`scrub_text` /
:func:`scrub_tree`.

Forms removed, for each password: the raw text; its base64 as AUTH LOGIN sends it; the AUTH PLAIN
blob (`\\0user\\0password` and `user\\0user\\0password`); URL-encoding (quote and quote_plus, upper and
lower-case hex); the IMAP quoted string; and, for passwords long enough that the pieces cannot occur by
chance, the stretch of base64 that encodes the password inside any larger base64 text, at each of the
three byte alignments.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 4  # shorter values would scrub ordinary words; such passwords are refused nowhere, only not hunted
MIN_FRAGMENT = 8  # a shorter base64 stretch could occur by chance in a message's base64 body

_lock = threading.Lock()
_forms: dict[str, None] = {}  # insertion-ordered set, longest forms replaced first
_bytes_forms: list[bytes] = []
_secrets: set[tuple[str, str]] = set()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _fragments(secret: bytes) -> list[str]:
    """The base64 characters that depend only on `secret`'s bytes, for each alignment in a larger text."""
    out = []
    for shift in range(3):
        encoded = _b64(b"\0" * shift + secret)
        start = (shift * 4 + 2) // 3  # characters carrying bits of the padding bytes before the secret
        end = (4 * (shift + len(secret))) // 3  # the characters after it mix in whatever follows
        piece = encoded[start:end]
        if len(piece) >= MIN_FRAGMENT:
            out.append(piece)
    return out


def forms(secret: str, user: str = "") -> list[str]:
    """Every written form of `secret` this module hunts for."""
    raw = secret.encode("utf-8")
    found = [secret, _b64(raw), quote(secret, safe=""), quote_plus(secret),
             '"' + secret.replace("\\", "\\\\").replace('"', '\\"') + '"']
    if user:
        u = user.encode("utf-8")
        found += [_b64(b"\0" + u + b"\0" + raw), _b64(u + b"\0" + u + b"\0" + raw)]
    found += [re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in found[2:4]]
    found += _fragments(raw)
    return [f for f in dict.fromkeys(found) if len(f) >= MIN_SECRET]


def register(secret: str | None, user: str = "") -> None:
    """Remember a password (and the user it goes with, for the AUTH PLAIN blob)."""
    global _bytes_forms
    if not secret or len(secret) < MIN_SECRET or (secret, user) in _secrets:
        return
    with _lock:
        _secrets.add((secret, user))
        for form in forms(secret, user):
            _forms[form] = None
        ordered = sorted(_forms, key=len, reverse=True)
        _forms.clear()
        _forms.update(dict.fromkeys(ordered))
        _bytes_forms = [f.encode("utf-8") for f in ordered]


def register_all(pairs: Iterable[tuple[str | None, str]]) -> None:
    for secret, user in pairs:
        register(secret, user)


def scrub_text(text: str) -> str:
    for form in list(_forms):
        if form in text:
            text = text.replace(form, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    for form in _bytes_forms:
        if form in data:
            data = data.replace(form, MASK.encode())
    return data


def scrub_tree(value):
    """A copy of a JSON-like value (dicts, lists, strings) with every string scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_tree(k): scrub_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_tree(v) for v in value]
    return value

"""Loopback ports for the servers the suite and the reference provider start.

A server that must announce a concrete port before it listens (aiosmtpd's Controller checks that it
is up on that port) cannot bind port 0. Asking the kernel for an ephemeral port and closing it races
with every outgoing connection of the same machine, which takes its source port from that same
range. Ports here come from below the kernel's ephemeral range, at random, each checked free by a
bind and never handed out twice by one process, so the only race left is with another process
picking the same port in the same instant.
"""

from __future__ import annotations

import random
import socket
import threading

_FLOOR = 20000
_DEFAULT_EPHEMERAL_LOW = 32768
_given: set[tuple[str, int]] = set()
_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, outside the ephemeral range, not given before by this process."""
    high = _ephemeral_low() - 1
    low = _FLOOR if high - _FLOOR > 1000 else 1025
    rng = random.SystemRandom()
    with _lock:
        for _ in range(200):  # bounded: a machine with every port of the range taken is an error
            port = rng.randint(low, high)
            if (host, port) not in _given and _bindable(host, port):
                _given.add((host, port))
                return port
        # Fall back on the kernel's choice rather than fail a run on a crowded machine.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        _given.add((host, port))
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (see free_port)."""
    return [free_port(host) for _ in range(count)]

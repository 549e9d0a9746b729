"""Free loopback ports for services started by the tests.

A port the kernel hands out for `bind(0)` comes from the ephemeral range, the
same range it uses for the source port of every outgoing connection. Between
choosing such a port and the service binding it, any client on the machine
(a service's own client connecting to its embedded etcd, for instance) can
take it. Ports are therefore chosen below the ephemeral range, where the
kernel never assigns source ports on its own.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_CANDIDATE = 20000
_FALLBACK_EPHEMERAL_START = 32768
_ATTEMPTS = 500

_chooser = random.Random()
# Ports handed out by this process: two services chosen before either binds must differ.
_handed_out: set[int] = set()


def _candidate_range() -> range:
    try:
        ephemeral_start = int(_EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = _FALLBACK_EPHEMERAL_START
    if ephemeral_start - _LOWEST_CANDIDATE < 1000:
        # An unusually low ephemeral range: the plain kernel choice is as good as any.
        return range(0)
    return range(_LOWEST_CANDIDATE, ephemeral_start)


def _bindable(port: int, kinds: tuple[int, ...], host: str) -> bool:
    if port in _handed_out:
        return False
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _choose(kinds: tuple[int, ...], host: str) -> int:
    candidates = _candidate_range()
    if candidates:
        for _ in range(_ATTEMPTS):
            port = _chooser.choice(candidates)
            if _bindable(port, kinds, host):
                _handed_out.add(port)
                return port
    for _ in range(_ATTEMPTS):
        with socket.socket(socket.AF_INET, kinds[0]) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if _bindable(port, kinds, host):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port on {host}")


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    return _choose((kind,), host)


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP (SIP listens on both)."""
    return _choose((socket.SOCK_STREAM, socket.SOCK_DGRAM), host)


def free_port_block(count: int, low: int | None = None, high: int | None = None) -> int:
    """A base port such that base..base+count-1 are all free for TCP and UDP."""
    candidates = _candidate_range() or range(_LOWEST_CANDIDATE, _FALLBACK_EPHEMERAL_START)
    low = candidates.start if low is None else low
    high = candidates.stop if high is None else high
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM)
    for _ in range(_ATTEMPTS):
        base = _chooser.randrange(low, high - count)
        block = range(base, base + count)
        if all(_bindable(port, kinds, "127.0.0.1") for port in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no block of {count} free ports between {low} and {high}")


def wait_for_tcp(host: str, port: int, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")

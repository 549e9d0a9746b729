"""Bad input never takes a running edge or node down, and gets a 400 where one is possible."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.services.platform import RunningPlatform, sip_options

pytestmark = pytest.mark.integration

TORTURE = Path(__file__).resolve().parents[1] / "media-node" / "tests" / "fixtures" / "rfc4475"
# Invalid requests whose Via, From, To, Call-ID and CSeq can still be read, so a 400 can
# be sent (RFC 3261 8.2); "insuf" lacks them and can only be dropped.
INVALID = ["badaspec", "badinv01", "baddate", "escruri", "mcl01", "ncl", "quotbal", "scalar02"]


def _send_udp(host: str, port: int, payload: bytes, wait: float = 0.3) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(payload, (host, port))
        try:
            return sock.recvfrom(65535)[0]
        except OSError:
            return None


def _mutations(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    base = (TORTURE / "wsinv.sip").read_bytes()
    out: list[bytes] = []
    for _ in range(count):
        data = bytearray(base)
        for _ in range(rng.randint(1, 20)):
            position = rng.randrange(len(data))
            data[position] = rng.choice(b'\x00\r\n:;<>",@ \xff' + bytes([rng.randrange(256)]))
        out.append(bytes(data[: rng.randint(1, len(data))]))
    out.append(b"\x00" * 2000)
    out.append(b"INVITE sip:x SIP/2.0\r\n" + b"Via: " + b"a" * 70_000 + b"\r\n\r\n")
    return out


def test_garbage_never_takes_the_edge_or_a_node_down(platform_factory: Any) -> None:
    platform: RunningPlatform = platform_factory()
    targets = [platform.sip_port, *platform.node_ports]
    pids = {name: platform.pid_of(name) for name in ("edge", "vpbx-node-acme-msk")}

    for port in targets:
        for payload in _mutations(seed=port, count=150):
            _send_udp(platform.host, port, payload[:65_000], wait=0.0)
        with socket.create_connection((platform.host, port), timeout=2) as stream:
            # A stream that cannot be framed is closed; the listener keeps serving.
            stream.sendall(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: nope\r\n\r\n")

    for port in targets:
        assert answers_options(platform.host, port), platform.log()[-3000:]
    assert {name: platform.pid_of(name) for name in pids} == pids, "a process restarted"


def answers_options(host: str, port: int, attempts: int = 3) -> bool:
    """Whether the listener answers an OPTIONS: a datagram the flood's full socket buffer
    dropped is retried, as a phone would; a process that stopped serving never answers."""
    return any(sip_options(host, port, timeout=2) == 200 for _ in range(attempts))


def test_invalid_torture_requests_get_400_from_the_edge(platform_factory: Any) -> None:
    platform: RunningPlatform = platform_factory()

    replies = {
        name: _send_udp(platform.host, platform.sip_port, (TORTURE / f"{name}.sip").read_bytes(), 2)
        for name in INVALID
    }

    wrong = {
        name: (r or b"")[:60]
        for name, r in replies.items()
        if not (r or b"").startswith(b"SIP/2.0 400 ")
    }
    assert not wrong, wrong

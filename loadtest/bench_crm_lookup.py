"""`make bench-crm-lookup`: what one CRM lookup costs the media node per call.

A ``crm-lookup`` route step asks the CRM on every call, on the node's SIP event loop
(``vpbx_media.node.crmlookup.CrmLookupClient``). This measures that client, on uvloop,
against a minimal keep-alive HTTP server answering the contract's document (a child
process, so its CPU is not counted), and, for the choice of library, the same request
through an httpx client set up as the HTTP decisions' (``node/decisions.py``):

- one lookup after the other: latency (p50, p99) and the client's CPU per lookup;
- ``--concurrency`` lookups at once: lookups/s, CPU per lookup, and how many missed
  the node's deadline (``--timeout-ms``, 300 by default, as ``VPBX_CRM_LOOKUP_TIMEOUT_MS``).

Nothing is asserted; the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httpx
import uvloop

from vpbx_media.node.crmlookup import CrmLookupClient

PHONE = "+79161234567"
_BODY = json.dumps(
    {
        "contact": {
            "id": "ct-1",
            "name": "Ivan Petrov",
            "category": "client",
            "owner_user_id": "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a",
            "vip": False,
        }
    }
).encode()
_RESPONSE = (
    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(_BODY)}\r\n\r\n"
).encode() + _BODY

Lookup = Callable[[], Awaitable[object]]


class _Server(asyncio.Protocol):
    """Answers every request head on a connection with the same document (keep-alive)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not asyncio.Transport subclasses, but write alike.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(_RESPONSE)


def _serve(port: int, ready: multiprocessing.synchronize.Event) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_Server, "127.0.0.1", port, backlog=1024)
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(run())


async def _measure(name: str, lookup: Lookup, lookups: int, concurrency: int) -> None:
    for _ in range(200):  # warm: connections open, code paths hot
        await lookup()
    latencies: list[float] = []
    cpu = time.process_time()
    for _ in range(lookups):
        started = time.perf_counter()
        await lookup()
        latencies.append((time.perf_counter() - started) * 1e6)
    cpu_us = (time.process_time() - cpu) / lookups * 1e6
    latencies.sort()
    p50, p99 = latencies[lookups // 2], latencies[int(lookups * 0.99)]
    print(f"{name}: one at a time: p50 {p50:.0f} us, p99 {p99:.0f} us, CPU {cpu_us:.0f} us/lookup")

    missed = 0

    async def worker(count: int) -> None:
        nonlocal missed
        for _ in range(count):
            try:
                await lookup()
            except Exception:  # counted: a missed deadline is what this measures
                missed += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(lookups // concurrency) for _ in range(concurrency)))
    done = lookups // concurrency * concurrency
    rate = done / (time.perf_counter() - wall)
    cpu_us = (time.process_time() - cpu) / done * 1e6
    print(
        f"{name}: {concurrency} at once: {rate:.0f} lookups/s, CPU {cpu_us:.0f} us/lookup,"
        f" {missed} of {done} missed the deadline"
    )


async def _run(port: int, arguments: argparse.Namespace) -> None:
    url = f"http://127.0.0.1:{port}"
    timeout_s = arguments.timeout_ms / 1000
    node = CrmLookupClient(url, "bench-token", timeout_ms=arguments.timeout_ms)
    await node.start()
    try:
        await _measure(
            "node client (aiohttp)",
            lambda: node.lookup("acme", PHONE),
            arguments.lookups,
            arguments.concurrency,
        )
    finally:
        await node.stop()

    async with httpx.AsyncClient(
        base_url=url, limits=httpx.Limits(max_keepalive_connections=20)
    ) as client:

        async def httpx_lookup() -> object:
            async with asyncio.timeout(timeout_s):
                response = await client.get(
                    "/internal/v1/lookup/acme", params={"phone": PHONE}, timeout=timeout_s
                )
                return json.loads(response.content)

        await _measure(
            "httpx, as decisions.py", httpx_lookup, arguments.lookups, arguments.concurrency
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout-ms", type=int, default=300)
    parser.add_argument("--port", type=int, default=18_931)
    arguments = parser.parse_args(argv)

    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(arguments.port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            raise SystemExit("the CRM stand-in did not start")
        uvloop.run(_run(arguments.port, arguments))
    finally:
        server.terminate()
        server.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m loadtest.bench_webrtc`: WebRTC legs bridged per core by the node's gateway.

The node's side is one `WebRtcGateway` with one worker process (one core's worth):
this process plays the node (the RPC, nothing per packet). The browsers live in
separate client processes, so their cost does not land on the gateway's core: each
browser is aiortc's ICE + DTLS-SRTP (the same transport layers a browser runs, without
aiortc's codec tracks, which would cost the client more than the gateway measured),
fed by a paced G.711 source. Next to each browser a "relay" socket plays the node's
RTP relay. Per leg, 50 packets/s flow each way through the gateway:

    browser mic -> SRTP -> gateway worker -> plain RTP -> relay socket
    relay socket -> plain RTP -> gateway worker -> SRTP -> browser

For 10, 25, 50 legs (`--legs`), after the legs are up and `--settle` seconds, the
gateway worker's CPU (utime+stime from /proc, so waiting for a core on a shared machine
is not counted) over `--seconds`, and the packets that arrived at both ends. Prints
figures only; no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from vpbx_media.media.g711 import Codec
from vpbx_media.sdp import Codec as SdpCodec
from vpbx_media.sdp import Direction
from vpbx_media.webrtc.gateway import WebRtcGateway
from vpbx_media.webrtc.translate import plain_sdp, read_plain

LOOPBACK = "127.0.0.1"
PCMU = (SdpCodec(0, "PCMU", 8000), SdpCodec(101, "telephone-event", 8000, fmtp="0-15"))
_HEADER = struct.Struct("!BBHII")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.packets += 1


async def _client(conn: Connection, first: int, count: int) -> None:
    """`count` browsers (and their relay sockets); the SDP goes through `conn`."""
    from aiortc import RTCCertificate

    from vpbx_media.webrtc.session import BridgeSession
    from vpbx_media.webrtc.worker import only_host_candidates

    only_host_candidates(LOOPBACK)
    loop = asyncio.get_running_loop()
    certificate = RTCCertificate.generateCertificate()
    legs: list[tuple[Counter, Counter, tuple[str, int], tuple[str, int]]] = []
    sessions: list[BridgeSession] = []
    for index in range(first, first + count):
        _, mic = await loop.create_datagram_endpoint(Counter, local_addr=(LOOPBACK, 0))
        _, relay = await loop.create_datagram_endpoint(Counter, local_addr=(LOOPBACK, 0))
        assert mic.transport is not None
        assert relay.transport is not None
        mic_port = mic.transport.get_extra_info("sockname")[1]
        relay_port = relay.transport.get_extra_info("sockname")[1]
        browser = BridgeSession(
            f"browser-{index}",
            certificate=certificate,
            plain_address=LOOPBACK,
            on_failed=lambda sid, why: print(f"{sid}: {why}", flush=True),
        )
        sessions.append(browser)
        mic_sdp = plain_sdp(
            address=LOOPBACK,
            port=mic_port,
            codecs=PCMU,
            direction=Direction.SENDRECV,
            session_id=index,
            version=1,
        )
        offer = await browser.offer_to_browser(mic_sdp)
        relay_sdp = plain_sdp(
            address=LOOPBACK,
            port=relay_port,
            codecs=PCMU,
            direction=Direction.SENDRECV,
            session_id=index,
            version=1,
        )
        conn.send((index, offer, relay_sdp))
        answer, gateway_plain = conn.recv()
        await browser.answer_from_browser(answer)
        gateway_side = read_plain(gateway_plain)
        legs.append(
            (
                mic,
                relay,
                (LOOPBACK, browser.plain_port),
                (gateway_side.address, gateway_side.port),
            )
        )
    # Wait for every DTLS handshake before the clock starts.
    for browser in sessions:
        for _ in range(400):
            if browser.dtls.state == "connected":
                break
            await asyncio.sleep(0.025)
    payload = Codec.PCMU.encode(b"\x00\x10" * 160)
    conn.send("up")
    stop = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: stop.done() or stop.set_result(None))
    seq = 0
    start = loop.time()
    while not stop.done():
        seq += 1
        for index, (mic, relay, browser_plain, gateway_plain) in enumerate(legs):
            assert mic.transport is not None
            assert relay.transport is not None
            mic.transport.sendto(
                _HEADER.pack(0x80, 0, seq & 0xFFFF, seq * 160, 1000 + index) + payload,
                browser_plain,
            )
            relay.transport.sendto(
                _HEADER.pack(0x80, 0, seq & 0xFFFF, seq * 160, 5000 + index) + payload,
                gateway_plain,
            )
        await asyncio.sleep(max(0.0, start + seq * 0.02 - loop.time()))
    conn.recv()
    conn.send([(mic.packets, relay.packets, seq) for mic, relay, _, _ in legs])
    for browser in sessions:
        await browser.close()


def client_main(conn: Connection, first: int, count: int) -> None:
    asyncio.run(_client(conn, first, count))


async def step(legs: int, clients: int, settle: float, seconds: float) -> dict[str, float]:
    gateway = WebRtcGateway(workers=1)
    await gateway.start()
    (worker_pid,) = gateway.pids
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    per_client = [legs // clients + (1 if i < legs % clients else 0) for i in range(clients)]
    first = 0
    for count in per_client:
        ours, theirs = context.Pipe()
        process = context.Process(target=client_main, args=(theirs, first, count), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
        first += count
    try:

        async def serve(conn: Connection, count: int) -> None:
            for _ in range(count):
                index, offer, relay_sdp = await loop.run_in_executor(None, conn.recv)
                session = f"leg-{index}"
                plain = await gateway.offer_from_browser(session, offer)
                answer = await gateway.answer_to_browser(session, relay_sdp)
                conn.send((answer, plain))
            await loop.run_in_executor(None, conn.recv)  # "up"

        await asyncio.gather(*(serve(c, n) for c, n in zip(pipes, per_client, strict=True)))
        await asyncio.sleep(settle)
        own_before = time.process_time()
        before = cpu_seconds(worker_pid)
        wall_before = time.monotonic()
        await asyncio.sleep(seconds)
        used = cpu_seconds(worker_pid) - before
        wall = time.monotonic() - wall_before
        node_loop = time.process_time() - own_before
        for conn in pipes:
            conn.send("stop")
        counts: list[tuple[int, int, int]] = []
        for conn in pipes:
            counts.extend(await loop.run_in_executor(None, conn.recv))
    finally:
        for process in processes:
            process.join(10)
        await gateway.stop()
    sent = sum(seq for _, _, seq in counts)
    to_browser = sum(mic for mic, _, _ in counts)
    to_relay = sum(relay for _, relay, _ in counts)
    share = used / wall
    return {
        "legs": legs,
        "cpu_pct": 100 * share,
        "pct_per_leg": 100 * share / legs,
        "legs_per_core": legs / share if share else float("inf"),
        "node_loop_pct": 100 * node_loop / wall,
        "to_browser": to_browser / sent,
        "to_relay": to_relay / sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", default="10,25,50")
    parser.add_argument("--clients", type=int, default=2, help="browser processes")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "| legs | gateway worker CPU | per leg | legs per core | node loop "
        "| delivered to browsers | delivered to relay |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for legs in (int(n) for n in args.legs.split(",")):
        r = asyncio.run(step(legs, args.clients, args.settle, args.seconds))
        print(
            f"| {legs} | {r['cpu_pct']:.1f} % | {r['pct_per_leg']:.2f} % | "
            f"{r['legs_per_core']:.0f} | {r['node_loop_pct']:.1f} % | "
            f"{100 * r['to_browser']:.1f} % | {100 * r['to_relay']:.1f} % |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""`make bench-media`: paced streams per node core, then per-frame costs of the media engine.

1. Streams per core (`loadtest/media_streams.py`): one node process on uvloop runs ONE
   `PacedScheduler` with N playbacks looping music on hold through real relays to a
   receiver process on 127.0.0.1; N climbs a ladder until more than 1% of packets are
   more than 10 ms late, a packet is lost or the node saturates a core. Reports the
   highest passing N, N per core and the CPU per stream.
2. Per-frame costs of the hot paths:
   - in-band DTMF: the numpy detector against two pure-Python ways of computing the
     same eight powers (a Goertzel recursion, and multiply-and-sum with `map`), on
     speech-level noise (every check runs) and on silence (the energy gate returns
     early);
   - G.711 decode and encode of one 160-sample frame;
   - the paced scheduler's tick over N playing streams (prompt looping, packet built
     and handed to a no-op send), in microseconds per stream.
   Figures are medians of five runs of CPU time (process time, so that waiting for a
   core on a shared machine is not counted), in microseconds.
3. The relay's per-packet path (`--parts relay`): `_RtpProtocol.datagram_received`
   forwarding one 172-octet PCMU packet from a leg's peer to the other leg (a transport
   whose `sendto` does nothing), for a call whose outgoing stream never changed source
   and for one whose source changed (the header is rewritten), and the node's own
   packet through `MediaRelay.sender(leg)`.
4. Recording's CPU per call: on the call path, placing each leg's packet on its
   channel's timeline (50 packets a second per leg) and the once-a-second flush to
   the spool file; off the call path (a worker thread after the call), encoding a
   minute of stereo G.711 to Opus/Ogg.

Everything runs on loopback and stops by itself (about 1-2 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import math
import operator
import os
import random
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from vpbx_media.media.dtmf import DtmfDetector
from vpbx_media.media.encode import encode_recording
from vpbx_media.media.g711 import Codec
from vpbx_media.media.player import Loop
from vpbx_media.media.prompt import Prompt
from vpbx_media.media.recorder import Channel, Recording, RecordingKind, RecordingMeta
from vpbx_media.media.rtpout import RtpStream
from vpbx_media.media.scheduler import PacedScheduler, Playback
from vpbx_media.media.tones import (
    DTMF_HIGH_HZ,
    DTMF_LOW_HZ,
    RINGBACK,
    dtmf,
    peak_amplitude,
)
from vpbx_media.rtp.ports import PortAllocator
from vpbx_media.rtp.relay import Leg, MediaRelay, _RtpProtocol

from . import media_streams

REPO = Path(__file__).resolve().parents[1]
FREQUENCIES = DTMF_LOW_HZ + DTMF_HIGH_HZ


def per_call_us(function: Callable[[], object], calls: int, repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        # CPU time of this process: on a shared machine, waiting for a core is not cost.
        start = time.process_time()
        for _ in range(calls):
            function()
        timings.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(timings)


def row(label: str, function: Callable[[], object], calls: int) -> None:
    print(f"  {label:<38} {per_call_us(function, calls):8.2f} us")


def goertzel_powers(frame: array.array[int]) -> list[float]:
    """The textbook recursion, one frequency at a time."""
    powers = []
    for frequency in FREQUENCIES:
        coefficient = 2 * math.cos(2 * math.pi * frequency / 8000)
        s1 = s2 = 0.0
        for sample in frame:
            s1, s2 = sample + coefficient * s1 - s2, s1
        powers.append(s1 * s1 + s2 * s2 - coefficient * s1 * s2)
    return powers


def map_powers(
    frame: array.array[int], table: list[tuple[list[float], list[float]]]
) -> list[float]:
    """Multiply-and-sum in C through `map`, the fastest the standard library gets."""
    return [
        sum(map(operator.mul, frame, cos)) ** 2 + sum(map(operator.mul, frame, sin)) ** 2
        for cos, sin in table
    ]


def bench_dtmf(calls: int) -> None:
    rng = random.Random(1)
    spread = peak_amplitude(-15.0)
    noise = array.array("h", (int(rng.gauss(0, spread)) for _ in range(160)))
    silence = array.array("h", bytes(320))
    key = dtmf("5", 20.0, ramp_ms=0.0)
    table = [
        (
            [math.cos(2 * math.pi * f * n / 8000) for n in range(160)],
            [math.sin(2 * math.pi * f * n / 8000) for n in range(160)],
        )
        for f in FREQUENCIES
    ]
    detector = DtmfDetector()
    payload = Codec.PCMU.encode(noise)
    print("in-band DTMF, one 20 ms frame (160 samples):")
    row("numpy detector, speech-level noise", lambda: detector.feed(noise), calls)
    row("numpy detector, a DTMF key", lambda: detector.feed(key), calls)
    row("numpy detector, PCMU payload", lambda: detector.feed_g711(payload, Codec.PCMU), calls)
    row("numpy detector, silence (gate)", lambda: detector.feed(silence), calls)
    row("pure Python Goertzel, 8 powers only", lambda: goertzel_powers(noise), calls // 20)
    row("pure Python map/sum, 8 powers only", lambda: map_powers(noise, table), calls // 10)


def bench_recording(calls: int, workdir: Path) -> None:
    """CPU a recorded call costs: per packet and flush on the call path, encoding after."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    pcm = array.array("h", (rng.randrange(-8000, 8000) for _ in range(160)))
    payload = Codec.PCMU.encode(pcm)
    header = bytearray(12)
    header[0], header[1] = 0x80, 0
    sequence = [0]

    clock = [0.0]
    meta = RecordingMeta(
        kind=RecordingKind.CALL,
        tenant="bench",
        call_id="bench",
        key="recordings/bench/bench.ogg",
        started_ms=0,
        codec=Codec.PCMU,
        channels=(Channel.CALLER, Channel.ANSWERER),
    )
    recording = Recording(workdir / "recording", meta, lambda: clock[0])
    caller = recording.writer(Channel.CALLER)
    packets = []
    for index in range(3000):  # one minute of one leg
        header[2:4] = (index & 0xFFFF).to_bytes(2, "big")
        header[4:8] = (index * 160).to_bytes(4, "big")
        packets.append(bytes(header) + payload)

    def feed() -> None:
        index = sequence[0]
        sequence[0] = index + 1
        clock[0] = index * 0.02
        caller.feed(packets[index])

    feed_us = per_call_us(feed, min(calls, len(packets)), repeats=1)
    flush_payload = payload * 50  # one second of one leg

    def flush() -> None:
        caller._pending += flush_payload
        caller.flush()

    flush_us = per_call_us(flush, 200)
    recording.close()
    # Encoding: a minute of both legs, as the uploader does after the call.
    for channel in (Channel.CALLER, Channel.ANSWERER):
        (workdir / "recording" / f"{channel.value}.g711").write_bytes(payload * 3000)
    start = time.process_time()
    encode_recording(workdir / "recording", meta, workdir / "minute.ogg")
    encode_ms = (time.process_time() - start) * 1000
    on_path_us = 2 * 50 * feed_us + 2 * flush_us  # per second of call, both legs
    print("recording, CPU per call:")
    print(f"  {'place one packet on its timeline':<38} {feed_us:8.2f} us")
    print(f"  {'flush one second of one leg':<38} {flush_us:8.2f} us")
    print(
        f"  call path: {on_path_us:.0f} us per second of a recorded call "
        f"({on_path_us / 1e4:.2f}% of a core per call; 100 calls: {on_path_us / 100:.0f}%)"
    )
    print(
        f"  after the call (worker thread): {encode_ms:.0f} ms to encode a minute of stereo "
        f"to Opus/Ogg ({(workdir / 'minute.ogg').stat().st_size / 1024:.0f} KiB)"
    )


def bench_g711(calls: int) -> None:
    rng = random.Random(2)
    pcm = array.array("h", (rng.randrange(-32768, 32768) for _ in range(160)))
    payload = Codec.PCMA.encode(pcm)
    print("G.711, one 160-sample frame:")
    row("decode (translate + interleave)", lambda: Codec.PCMA.decode(payload), calls)
    row("encode (64K table via map)", lambda: Codec.PCMA.encode(pcm), calls)


class _ManualLoop:
    """A loop stand-in whose timer the benchmark fires itself, on time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.callback: Callable[[], object] | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> _ManualLoop:
        self.now = when
        self.callback = callback
        return self

    def cancel(self) -> None:
        self.callback = None

    def fire(self) -> None:
        assert self.callback is not None
        self.callback()


def bench_scheduler(streams: int, ticks: int) -> None:
    music = Prompt.from_cadence(RINGBACK, Codec.PCMU)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    target = receiver.getsockname()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)

    def to_socket(datagram: bytes) -> None:
        # What a DatagramTransport.sendto boils down to; the receiver never reads, so the
        # kernel drops what overflows its buffer (the send itself still happens).
        sender.sendto(datagram, target)

    print(f"paced scheduler, one tick over {streams} looping streams:")
    for label, send in (("no-op send", lambda datagram: None), ("UDP sendto", to_socket)):
        loop = _ManualLoop()
        scheduler = PacedScheduler()
        scheduler.start(loop)
        for index in range(streams):
            playback = Playback(RtpStream(0), send)
            playback.play(Loop(music, start=index))
            scheduler.add(playback)
        per_tick = per_call_us(loop.fire, ticks)
        print(f"  {label:<38} {per_tick:8.0f} us per tick, {per_tick / streams:6.2f} us per stream")
        scheduler.stop()
    sender.close()
    receiver.close()


class _NullTransport(asyncio.DatagramTransport):
    """A transport whose sends cost nothing, so that only the relay's own work is timed."""

    def sendto(self, data: object, addr: object = None) -> None:
        pass


def _rtp(seq: int, timestamp: int, ssrc: int) -> bytes:
    return bytes((0x80, 0)) + struct.pack("!HII", seq, timestamp, ssrc) + bytes(160)


async def _bench_relay(calls: int) -> None:
    relay = MediaRelay("127.0.0.1", PortAllocator(40_000, 40_010), rtcp_interval=None)
    legs = relay._legs
    a, b = legs[Leg.A], legs[Leg.B]
    for state in (a, b):
        state.rtp_transport = _NullTransport()
        state.rtp_source = state.rtp_target = ("127.0.0.1", 9)
    forward = _RtpProtocol(a, b, "bench")
    peer = ("127.0.0.1", 9)
    # A whole cycle of sequence numbers, so that the wrap is an ordinary +1.
    relayed = [_rtp(seq, seq * 160, 0x1234) for seq in range(1 << 16)]
    generated = [_rtp(seq, seq * 160, 0x5678) for seq in range(1 << 16)]
    position = 0

    def one() -> None:
        nonlocal position
        forward.datagram_received(relayed[position], peer)
        position = (position + 1) & 0xFFFF

    send_a = relay.sender(Leg.A)
    send_b = relay.sender(Leg.B)
    index = 0

    def own_a() -> None:
        nonlocal index
        send_a(generated[index])
        index = (index + 1) & 0xFFFF

    def own_b() -> None:
        nonlocal index
        send_b(generated[index])
        index = (index + 1) & 0xFFFF

    row("forward A to B, one source all along", one, calls)
    row("node's own packet, the leg's only source", own_a, calls)
    # The node's own audio to B, then A's again: B's stream changed source.
    send_b(generated[0])
    row("forward A to B after a source change", one, calls)
    row("node's own packet after a source change", own_b, calls)


def bench_relay(calls: int) -> None:
    print("relay, one 172-octet RTP packet (a no-op transport):", flush=True)
    asyncio.run(_bench_relay(calls))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_media", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--parts",
        default="streams,frames,relay,recording",
        help="comma-separated: streams (per-core search), frames (per-frame costs), "
        "relay (the relay's per-packet path), recording (CPU of a recorded call)",
    )
    parser.add_argument(
        "--steps",
        default=",".join(str(step) for step in media_streams.DEFAULT_STEPS),
        help="comma-separated ladder of concurrent streams, climbed in order",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=5.0, help="measuring window per step (default 5)"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=1.0,
        help="streams play this long before the window opens (default 1)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=150.0,
        help="no new step of the search starts after this many seconds (default 150)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default var/bench-media/<UTC timestamp>"
    )
    parser.add_argument(
        "--node-nice",
        type=int,
        default=0,
        help="niceness added to the node process (negative needs root; default 0): -10 "
        "approximates a node whose CPU request is guaranteed on a busy machine",
    )
    parser.add_argument(
        "--node-realtime",
        action="store_true",
        help="run the node process SCHED_RR (needs root): what the node does with a core "
        "that other work cannot take, on a machine too busy to give it one otherwise",
    )
    parser.add_argument(
        "--keep-raw",
        action="store_true",
        help="keep what the receiver recorded per step (RTP headers, arrival times) in workdir",
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per per-frame measurement")
    parser.add_argument(
        "--streams", type=int, default=500, help="streams of the per-frame scheduler tick"
    )
    return parser.parse_args(argv)


def _parse_steps(text: str) -> tuple[int, ...]:
    steps = tuple(int(part) for part in text.split(",") if part.strip())
    if not steps or any(step <= 0 for step in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"--steps must be rising positive integers, not {text!r}")
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not parts or parts - {"streams", "frames", "relay", "recording"}:
        print(f"bench-media: unknown parts in {args.parts!r}", file=sys.stderr)
        return 2
    try:
        steps = _parse_steps(args.steps)
    except ValueError as exc:
        print(f"bench-media: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or REPO / "var" / "bench-media" / stamp).resolve()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"bench-media: {os.cpu_count()} CPUs shared by the node, the receiver, this driver "
        f"and any other work on the machine (load average {load}); files in {workdir}",
        flush=True,
    )
    if "streams" in parts:
        config = media_streams.SearchConfig(
            steps=steps,
            window_s=args.step_seconds,
            warmup_s=args.warmup_seconds,
            budget_s=args.budget,
            workdir=workdir,
            keep_raw=args.keep_raw,
            node_nice=args.node_nice,
            node_realtime=args.node_realtime,
        )
        print(
            f"\nstreams per core: ladder {','.join(map(str, steps))} streams, "
            f"{config.warmup_s:g} s warm-up + {config.window_s:g} s window per step; pass: "
            "0 lost, every stream heard, <= 1% of packets > 10 ms late",
            flush=True,
        )
        try:
            result = media_streams.search(config)
        except media_streams.BenchError as exc:
            print(f"bench-media: {exc}", file=sys.stderr)
            return 1
        for line in media_streams.summary_lines(result, config):
            print(line, flush=True)
        print(f"details: {workdir / 'streams.json'}", flush=True)
    if "frames" in parts:
        print("\nper-frame costs (CPU time, median of 5):", flush=True)
        bench_dtmf(args.calls)
        bench_g711(args.calls)
        bench_scheduler(args.streams, max(20, args.calls // 200))
    if "relay" in parts:
        print(flush=True)
        bench_relay(args.calls * 5)
    if "recording" in parts:
        print(flush=True)
        bench_recording(args.calls, workdir / "recording")
    return 0


if __name__ == "__main__":
    sys.exit(main())

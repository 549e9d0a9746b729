"""`python -m loadtest.bench_mixer`: CPU of the conference mixer per 20 ms tick.

For conferences of 2 to 32 parties, everyone talking (speech-level noise, PCMU with
every fourth party on PCMA): per tick, the mix of every party (decode, who-hears-whom
product, clip, encode) and one RTP packet to each party, handed to a no-op send and to
a real UDP socket on loopback (what the relay's `sender` boils down to); and per
packet, a party taking one RTP packet into its input ring (the relay's per-packet
callback). A conference's CPU per second is 50 ticks plus 50 packets per party.

Figures are medians of five runs of process CPU time (waiting for a core on a shared
machine is not counted), in microseconds. Prints figures only; no thresholds.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import struct
import time
from collections.abc import Callable, Sequence

import numpy as np

from vpbx_media.media.g711 import FRAME_SAMPLES, Codec
from vpbx_media.media.mixer import Conference, Party

FRAMES = 250  # 5 s of distinct frames per talker, reused round and round
_HEADER = struct.Struct("!BBHII")


def talker_frames(codec: Codec, rng: np.random.Generator) -> list[bytes]:
    """FRAMES payloads of speech-level noise."""
    pcm = np.clip(rng.normal(0, 3000, FRAMES * FRAME_SAMPLES), -32768, 32767).astype(np.int16)
    codes = codec.encode(pcm.tobytes())
    return [codes[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(FRAMES)]


def conference_of(
    size: int, send: Callable[[bytes], object]
) -> tuple[Conference, list[tuple[Party, list[bytes]]]]:
    rng = np.random.default_rng(size)
    conference = Conference(name=f"bench-{size}")
    members = []
    for index in range(size):
        codec = Codec.PCMA if index % 4 == 3 else Codec.PCMU
        party = Party(f"p{index}", codec, send)
        conference.add(party)
        members.append((party, talker_frames(codec, rng)))
    return conference, members


def measure(size: int, send: Callable[[bytes], object], ticks: int) -> tuple[float, float]:
    """(us per tick, us per packet taken), each tick after one packet from every party."""
    conference, members = conference_of(size, send)

    def packets(frame: int) -> list[tuple[Party, bytes]]:
        """Every party's packet of this frame, as its phone would send it."""
        return [
            (
                party,
                _HEADER.pack(
                    0x80,
                    party.codec.payload_type,
                    frame & 0xFFFF,
                    (frame * FRAME_SAMPLES) & 0xFFFFFFFF,
                    ssrc,
                )
                + frames[frame % FRAMES],
            )
            for ssrc, (party, frames) in enumerate(members, 1)
        ]

    frame = 0
    for party, packet in packets(frame):
        party.on_rtp(packet)
    conference.tick()  # builds the layout once
    tick_runs, feed_runs = [], []
    for _ in range(6):  # the first run warms up (caches, the CPU's clock) and is left out
        tick_spent = feed_spent = 0.0
        for _ in range(ticks):
            frame += 1
            batch = packets(frame)
            start = time.process_time()
            for party, packet in batch:
                party.on_rtp(packet)
            middle = time.process_time()
            conference.tick()
            tick_spent += time.process_time() - middle
            feed_spent += middle - start
        tick_runs.append(tick_spent / ticks * 1e6)
        feed_runs.append(feed_spent / ticks / size * 1e6)
    for party, _ in members:
        stats = party.stats()
        if stats.send_errors or stats.late or stats.dropped_frames:
            raise RuntimeError(f"the benchmark's conference misbehaved: {stats}")
    return statistics.median(tick_runs[1:]), statistics.median(feed_runs[1:])


def bench(size: int, ticks: int, target: tuple[str, int], sender: socket.socket) -> None:
    def to_socket(datagram: bytes) -> None:
        # What a DatagramTransport.sendto boils down to; the receiver never reads, so the
        # kernel drops what overflows its buffer (the send itself still happens).
        sender.sendto(datagram, target)

    noop_us, feed_us = measure(size, lambda datagram: None, ticks)
    udp_us, _ = measure(size, to_socket, ticks)
    per_second = 50 * udp_us + 50 * size * feed_us
    print(
        f"  {size:>3} parties: {noop_us:7.1f} us/tick (no-op send), {udp_us:7.1f} us/tick "
        f"(UDP sendto); {udp_us / size:5.1f} us per party; on_rtp {feed_us:4.2f} us/packet; "
        f"{per_second / 1e4:5.2f}% of a core"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_mixer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default="2,3,8,16,32", help="comma-separated party counts")
    parser.add_argument("--ticks", type=int, default=2000, help="ticks per run (default 2000)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    random.seed(1)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"bench-mixer: {os.cpu_count()} CPUs (load average {load}); numpy {np.__version__}; "
        "everyone talking, every fourth party PCMA"
    )
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    try:
        for size in sizes:
            bench(size, args.ticks, receiver.getsockname(), sender)
    finally:
        sender.close()
        receiver.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

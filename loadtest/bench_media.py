"""Per-frame cost of the media engine's hot paths: `uv run python -m loadtest.bench_media`.

- in-band DTMF: the numpy detector against two pure-Python ways of computing the same
  eight powers (a Goertzel recursion, and multiply-and-sum with `map`), on speech-level
  noise (every check runs) and on silence (the energy gate returns early);
- G.711 decode and encode of one 160-sample frame;
- the paced scheduler's tick over N playing streams (prompt looping, packet built and
  handed to a no-op send), in microseconds per stream.

Figures are medians of five runs of CPU time (process time, so that waiting for a core
on a shared machine is not counted), in microseconds, on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import array
import math
import operator
import random
import socket
import statistics
import time
from collections.abc import Callable

from vpbx_media.media.dtmf import DtmfDetector
from vpbx_media.media.g711 import Codec
from vpbx_media.media.player import Loop
from vpbx_media.media.prompt import Prompt
from vpbx_media.media.rtpout import RtpStream
from vpbx_media.media.scheduler import PacedScheduler, Playback
from vpbx_media.media.tones import (
    DTMF_HIGH_HZ,
    DTMF_LOW_HZ,
    RINGBACK,
    dtmf,
    peak_amplitude,
)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args()
    bench_dtmf(args.calls)
    bench_g711(args.calls)
    bench_scheduler(args.streams, max(20, args.calls // 200))


if __name__ == "__main__":
    main()

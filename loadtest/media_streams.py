"""Paced streams per core: how many looping prompts one node process sends on time.

The question (a queue with music on hold, an IVR prompt): how many callers can one
node hold with under 1% of packets more than 10 ms late and none lost, and what does
each cost of a core. Three processes, all on 127.0.0.1:

- the **node** (a fresh process per step, on uvloop through `vpbx_media.runtime.run`
  like the real node): N calls, each with a real `MediaRelay` (its own sockets, port
  pairs from a `PortAllocator`, the RTCP report task), leg A's remote set to the
  receiver; per call `Playback(RtpStream(0), relay.sender(Leg.A))` looping the default
  music on hold (`vpbx_media.node.prompts.music_on_hold()`, PCMU) on the node's ONE
  `PacedScheduler`, which is what `node/calls/media.py` does for a caller in a queue or
  an IVR. After a warm-up it measures a window: its own CPU time (user + system, so the
  kernel's loopback `sendto` counts) over wall time, and the scheduler's counters.
- the **receiver** (one process for the whole search): one UDP socket with
  `SO_TIMESTAMPNS`, so every packet carries the kernel's arrival time and the figures
  do not depend on when the receiver itself gets a core; the receive buffer is forced
  large (`SO_RCVBUFFORCE`, as root) so that a receiver that falls behind for a while
  loses nothing. Its loop only appends the 12-octet RTP header and the timestamp to two
  buffers; the arithmetic runs (numpy) after the step.
- the **driver** (this process): climbs the ladder, tells the receiver when a step
  begins and ends over a control datagram on the same socket (so it comes after the
  step's packets), and prints a row per step.

Per stream (one SSRC each) the receiver computes, over the packets whose arrival lies
in the node's measuring window: sequence gaps (lost), and each packet's lateness
against the stream's ideal 20 ms grid, `arrival - (base + 20 ms * k)` where k is the
number of frame times since the stream's first packet in the window, read from the RTP
timestamp (160 per frame), and base is the earliest `arrival - 20 ms * k` of the stream
(its most on-time packet, so that a late first packet does not make every other one
look early). k comes from the timestamp rather than from counting packets so that a
tick the scheduler dropped (after a stall of more than 100 ms) shows as that one gap,
not as every later packet being 20 ms late; the dropped frames themselves count as
late packets (scheduler's `skipped_ticks` x N). Lost counts sequence gaps and packets
the node handed to its sockets in the window that did not arrive.

A step passes with no loss, every stream heard, and at most 1% of packets (dropped
frames included) more than 10 ms late. The search stops at the first failing step, when
the node used 90% of a core or more (saturated), at the top of the ladder or when the
time budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import json
import multiprocessing
import os
import resource
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REALTIME_PRIORITY = 10
FRAME_NS = 20_000_000
SAMPLES_PER_FRAME = 160
LATE_NS = 10_000_000
MAX_LATE_RATIO = 0.01
# A node using this much of a core has no room left: a busy loop, or a real-time one
# at the kernel's real-time throttle (95% of each second).
SATURATED_CPU = 0.90
DEFAULT_STEPS = (100, 250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000)
# Port pairs for the node's relays: below the ephemeral range, apart from the node's
# default 20000-29999 (other nodes on the machine may be using it). A relay retries
# a pair that someone else holds.
PORT_RANGE = (10000, 19999)
PORT_RANGE_HIGH = (30000, 32767)
# Each call's relay holds four sockets (RTP and RTCP of legs A and B).
FDS_PER_CALL = 4
FD_RESERVE = 64

# Linux socket options the socket module does not name (asm-generic values, x86_64 too).
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
RECEIVE_BUFFER = 128 * 1024 * 1024
HEADER_BYTES = 12
TIMESPEC = struct.Struct("@qq")
WINDOW = struct.Struct("!qq")
BEGIN = b"B"
END = b"E"
QUIT = b"Q"


class BenchError(RuntimeError):
    """The benchmark could not run a step."""


# --- the node -----------------------------------------------------------------------


def node_process(
    conn: Connection,
    streams: int,
    target: tuple[str, int],
    warmup_s: float,
    window_s: float,
    port_ranges: Sequence[tuple[int, int]],
    nice: int,
    realtime: bool,
) -> None:
    """Entry point of a step's node process (spawned)."""
    from vpbx_media import runtime

    if nice:
        os.nice(nice)
    if realtime:
        # Round-robin at a low real-time priority: the node runs as soon as it is
        # runnable, as if it had a core to itself (the kernel still reserves 5% of each
        # second for normal tasks).
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))
    try:
        runtime.run(lambda: _node(conn, streams, target, warmup_s, window_s, port_ranges))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        raise


async def _node(
    conn: Connection,
    streams: int,
    target: tuple[str, int],
    warmup_s: float,
    window_s: float,
    port_ranges: Sequence[tuple[int, int]],
) -> None:
    from vpbx_media.media.g711 import Codec
    from vpbx_media.media.player import Loop
    from vpbx_media.media.prompt import Prompt
    from vpbx_media.media.rtpout import RtpStream
    from vpbx_media.media.scheduler import PacedScheduler, Playback
    from vpbx_media.node.prompts import music_on_hold
    from vpbx_media.rtp.ports import PortAllocator, PortsExhaustedError
    from vpbx_media.rtp.relay import Leg, MediaRelay
    from vpbx_media.runtime import configure_logging

    configure_logging("WARNING")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    music = Prompt.from_pcm(music_on_hold(), Codec.PCMU)
    allocators = [PortAllocator(low, high) for low, high in port_ranges]
    scheduler = PacedScheduler()
    scheduler.start()
    relays: list[MediaRelay] = []
    try:
        setup_started = time.perf_counter()
        for index in range(streams):
            relay: MediaRelay | None = None
            for allocator in allocators:
                if allocator.available >= 2:
                    relay = MediaRelay(HOST, allocator, call_id=f"bench-{index}")
                    break
            if relay is None:
                raise PortsExhaustedError(0, 0, len(relays))
            await relay.start()
            relay.set_remote(Leg.A, target[0], target[1])
            relays.append(relay)
        # Build every playback first, then add them in one go: they share one grid.
        playbacks = []
        for index, relay in enumerate(relays):
            # SSRC fixed per stream (the node draws it at random): the receiver tells the
            # streams apart by it, and random ones could collide among thousands.
            playback = Playback(RtpStream(0, ssrc=index + 1), relay.sender(Leg.A))
            playback.play(Loop(music, start=index * 7))
            playbacks.append(playback)
        setup_s = time.perf_counter() - setup_started
        for playback in playbacks:
            scheduler.add(playback)
        await asyncio.sleep(warmup_s)

        # The measuring window, taken between ticks (inside a timer callback).
        gc_pauses = _GcPauses()
        gc.callbacks.append(gc_pauses)
        scheduler.max_lateness_us = 0
        before = (scheduler.ticks, scheduler.frames_sent, scheduler.late_ticks)
        skipped_before, errors_before = scheduler.skipped_ticks, scheduler.errors
        times_before = os.times()
        sched_before = _schedstat()
        wall_before = time.perf_counter()
        start_ns = time.time_ns()
        await asyncio.sleep(window_s)
        end_ns = time.time_ns()
        wall = time.perf_counter() - wall_before
        times_after = os.times()
        sched_after = _schedstat()
        gc.callbacks.remove(gc_pauses)
        result: dict[str, Any] = {
            "streams": streams,
            "setup_s": setup_s,
            "start_ns": start_ns,
            "end_ns": end_ns,
            "wall_s": wall,
            "user_s": times_after.user - times_before.user,
            "system_s": times_after.system - times_before.system,
            "ticks": scheduler.ticks - before[0],
            "frames_sent": scheduler.frames_sent - before[1],
            "late_ticks": scheduler.late_ticks - before[2],
            "skipped_ticks": scheduler.skipped_ticks - skipped_before,
            "max_lateness_us": scheduler.max_lateness_us,
            "scheduler_errors": scheduler.errors - errors_before,
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "fd_limit": hard,
            "niceness": os.nice(0),
            "runqueue_wait_s": (sched_after[1] - sched_before[1]) / 1e9,
            "gc_collections": gc_pauses.count,
            "gc_total_ms": gc_pauses.total_ns / 1e6,
            "gc_max_ms": gc_pauses.max_ns / 1e6,
        }
        scheduler.stop()
        conn.send(result)
    finally:
        scheduler.stop()
        await asyncio.gather(*(relay.stop() for relay in relays), return_exceptions=True)


class _GcPauses:
    """Counts the cyclic garbage collector's runs and how long each held the loop."""

    def __init__(self) -> None:
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._started
        self.count += 1
        self.total_ns += pause
        self.max_ns = max(self.max_ns, pause)


def _schedstat() -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of this process's thread."""
    try:
        fields = Path("/proc/self/schedstat").read_text().split()
        return int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return 0, 0


def cpu_pressure_us() -> int | None:
    """Total µs some task waited for a CPU, machine-wide (/proc/pressure/cpu)."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- the receiver -------------------------------------------------------------------


def _socket_drops(port: int) -> int | None:
    """The kernel's drop counter of our UDP socket on 127.0.0.1:port (/proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 12 and fields[1] == local:
            return int(fields[-1])
    return None


def receiver_process(conn: Connection, receive_buffer: int, raw_dir: Path | None) -> None:
    """Entry point of the receiver (spawned): records headers and kernel arrival times."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    forced = True
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
    except PermissionError:
        forced = False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    conn.send(
        {
            "port": port,
            "receive_buffer": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "forced": forced,
        }
    )
    recvmsg = sock.recvmsg
    ancillary = socket.CMSG_SPACE(TIMESPEC.size)
    headers = bytearray()
    stamps = bytearray()
    cpu_before = 0.0
    wall_before = 0.0
    drops_before = 0
    while True:
        data, anc, _flags, _addr = recvmsg(HEADER_BYTES, ancillary)
        if data[0] == 0x80 and anc:  # RTP version 2, no padding, extension or CSRC
            headers += data
            stamps += anc[0][2]
            continue
        if data == BEGIN:
            headers = bytearray()
            stamps = bytearray()
            cpu_before = time.process_time()
            wall_before = time.perf_counter()
            drops_before = _socket_drops(port) or 0
        elif data == END:
            cpu = time.process_time() - cpu_before
            wall = time.perf_counter() - wall_before
            start_ns, end_ns = WINDOW.unpack(conn.recv_bytes())
            drops = _socket_drops(port)
            if raw_dir is not None:
                _keep_raw(raw_dir, headers, stamps, start_ns, end_ns)
            figures = analyse(bytes(headers), bytes(stamps), start_ns, end_ns)
            figures["receiver_cpu"] = cpu / wall if wall > 0 else 0.0
            figures["receiver_drops"] = None if drops is None else drops - drops_before
            figures["recorded"] = len(headers) // HEADER_BYTES
            conn.send(figures)
        elif data == QUIT:
            break
    sock.close()


def _keep_raw(raw_dir: Path, headers: bytearray, stamps: bytearray, start: int, end: int) -> None:
    """What the receiver recorded in a step, for a closer look (`--keep-raw`)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{time.strftime('%H%M%S')}-{len(headers) // HEADER_BYTES}"
    (raw_dir / f"{name}.headers").write_bytes(headers)
    (raw_dir / f"{name}.stamps").write_bytes(stamps)
    (raw_dir / f"{name}.window").write_text(f"{start} {end}\n")


def analyse(headers: bytes, stamps: bytes, start_ns: int, end_ns: int) -> dict[str, Any]:
    """Per-stream loss and lateness of the packets that arrived in [start_ns, end_ns]."""
    import numpy as np

    header_type = np.dtype(
        [("flags", "u1"), ("pt", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")]
    )
    stamp_type = np.dtype([("sec", "=i8"), ("nsec", "=i8")])
    header = np.frombuffer(headers, dtype=header_type)
    stamp = np.frombuffer(stamps, dtype=stamp_type)
    arrival = stamp["sec"] * 1_000_000_000 + stamp["nsec"]
    inside = (arrival >= start_ns) & (arrival <= end_ns)
    arrival = arrival[inside]
    ssrc = header["ssrc"][inside].astype(np.int64)
    seq = header["seq"][inside].astype(np.int64)
    timestamp = header["ts"][inside].astype(np.int64)
    packets = int(arrival.size)
    if packets == 0:
        return {
            "packets": 0,
            "streams_heard": 0,
            "gap_lost": 0,
            "out_of_order": 0,
            "late": 0,
            "late_ratio": 0.0,
            "max_lateness_ms": 0.0,
            "p99_lateness_ms": 0.0,
            "streams_with_late": 0,
            "late_slots": 0,
            "tick_spread_ms": 0.0,
        }
    # Group by stream, keeping arrival order inside each stream.
    order = np.argsort(ssrc, kind="stable")
    ssrc, seq, timestamp, arrival = ssrc[order], seq[order], timestamp[order], arrival[order]
    first = np.ones(packets, dtype=bool)
    first[1:] = ssrc[1:] != ssrc[:-1]
    starts = np.flatnonzero(first)
    step = np.zeros(packets, dtype=np.int64)
    step[1:] = (seq[1:] - seq[:-1]) & 0xFFFF
    step[first] = 0
    # A step of more than half the number space is a packet from the past (reordered).
    backwards = step > 0x8000
    gaps = (step > 1) & ~backwards
    gap_lost = int((step[gaps] - 1).sum())
    group = np.cumsum(first) - 1
    # Frame times since the stream's first packet in the window, from the RTP timestamp
    # (the media clock): a tick the scheduler dropped moves it on without a packet.
    frames = ((timestamp - timestamp[starts][group]) & 0xFFFFFFFF) // SAMPLES_PER_FRAME
    offset = arrival - frames * FRAME_NS
    base = np.minimum.reduceat(offset, starts)
    lateness = offset - base[group]
    late = lateness > LATE_NS
    late_count = int(late.sum())
    # 20 ms slots of arrival time holding a late packet: one stall or lateness all along.
    late_slots = int(np.unique(arrival[late] // FRAME_NS).size)
    return {
        "packets": packets,
        "streams_heard": int(starts.size),
        "gap_lost": gap_lost,
        "out_of_order": int(backwards.sum()),
        "late": late_count,
        "late_ratio": late_count / packets,
        "max_lateness_ms": float(lateness.max()) / 1e6,
        "p99_lateness_ms": float(np.percentile(lateness, 99)) / 1e6,
        "streams_with_late": int(np.unique(group[late]).size),
        "late_slots": late_slots,
        # How long after the first stream's packet the last one's leaves, in the most
        # on-time tick of each: the time one tick takes to send every stream.
        "tick_spread_ms": float(base.max() - base.min()) / 1e6,
    }


# --- the search ---------------------------------------------------------------------


class Verdict(enum.Enum):
    PASSED = "passed"
    LATE = "over 1% of packets > 10 ms late"
    LOST = "packets lost"
    NODE_FAILED = "node failed"


@dataclass(frozen=True)
class StepResult:
    streams: int
    sent: int
    packets: int
    lost: int
    late: int
    late_ratio: float
    late_slots: int
    dropped_frames: int
    tick_spread_ms: float
    max_lateness_ms: float
    p99_lateness_ms: float
    streams_heard: int
    streams_with_late: int
    node_cpu: float
    node_user_s: float
    node_system_s: float
    window_s: float
    late_ticks: int
    skipped_ticks: int
    max_lateness_us: int
    ticks: int
    receiver_cpu: float
    receiver_drops: int | None
    setup_s: float
    node_rss_mib: float
    # Share of the window the node was runnable but waited for a CPU (schedstat), and
    # of the step some task on the machine did (/proc/pressure/cpu): contention.
    node_wait: float
    cpu_pressure: float | None
    # The node's cyclic garbage collections in the window and the longest one.
    gc_collections: int
    gc_max_ms: float
    verdict: Verdict
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED

    @property
    def saturated(self) -> bool:
        return self.node_cpu >= SATURATED_CPU

    @property
    def cpu_us_per_packet(self) -> float:
        cpu = self.node_user_s + self.node_system_s
        return cpu / self.sent * 1e6 if self.sent else 0.0


@dataclass(frozen=True)
class SearchConfig:
    steps: tuple[int, ...]
    window_s: float
    warmup_s: float
    budget_s: float
    workdir: Path
    keep_raw: bool = False
    node_nice: int = 0
    node_realtime: bool = False


STEP_HEADER = (
    "      N   packets  late>10ms   p99 ms   max ms  spread  lost  node CPU  usr/sys  us/pkt"
    "  wait   psi  rx CPU  late_ticks skipped max_lat_us  verdict"
)


def format_step(step: StepResult) -> str:
    pressure = "?" if step.cpu_pressure is None else f"{step.cpu_pressure:.0%}"
    verdict = step.verdict.value + (f" ({step.note})" if step.note else "")
    if step.saturated:
        verdict += ", node saturated"
    user = f"{step.node_user_s / step.window_s:.0%}/{step.node_system_s / step.window_s:.0%}"
    return (
        f"{step.streams:7d} {step.packets:9d} {step.late_ratio:9.3%} {step.p99_lateness_ms:8.2f} "
        f"{step.max_lateness_ms:8.1f} {step.tick_spread_ms:7.1f} {step.lost:5d} "
        f"{step.node_cpu:9.1%} {user:>8} {step.cpu_us_per_packet:7.2f} {step.node_wait:5.0%} "
        f"{pressure:>5} {step.receiver_cpu:7.0%} {step.late_ticks:11d} {step.skipped_ticks:7d} "
        f"{step.max_lateness_us:10d}  {verdict}"
    )


class Receiver:
    """The receiver process and the driver's control socket towards it."""

    def __init__(self, context: Any, raw_dir: Path | None) -> None:
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=receiver_process,
            args=(child, RECEIVE_BUFFER, raw_dir),
            name="bench-receiver",
        )
        self._process.daemon = True
        self._process.start()
        if not self._conn.poll(30):
            raise BenchError("the receiver did not start")
        info = self._conn.recv()
        self.port: int = info["port"]
        self.receive_buffer: int = info["receive_buffer"]
        self.forced: bool = info["forced"]
        self._control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def begin(self) -> None:
        self._control.sendto(BEGIN, (HOST, self.port))

    def end(self, start_ns: int, end_ns: int, timeout: float) -> dict[str, Any]:
        self._conn.send_bytes(WINDOW.pack(start_ns, end_ns))
        self._control.sendto(END, (HOST, self.port))
        if not self._conn.poll(timeout):
            raise BenchError(f"the receiver did not report within {timeout:g} s")
        figures: dict[str, Any] = self._conn.recv()
        return figures

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._control.sendto(QUIT, (HOST, self.port))
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._control.close()


def run_step(context: Any, receiver: Receiver, streams: int, config: SearchConfig) -> StepResult:
    conn, child = context.Pipe()
    node = context.Process(
        target=node_process,
        args=(
            child,
            streams,
            (HOST, receiver.port),
            config.warmup_s,
            config.window_s,
            (PORT_RANGE, PORT_RANGE_HIGH),
            config.node_nice,
            config.node_realtime,
        ),
        name=f"bench-node-{streams}",
    )
    pressure_before = cpu_pressure_us()
    wall_before = time.monotonic()
    receiver.begin()
    node.start()
    child.close()
    # Set-up (binding 4 sockets per call) takes about 0.3 ms per call here.
    timeout = 30 + streams * 0.005 + config.warmup_s + config.window_s
    try:
        if not conn.poll(timeout):
            raise BenchError(f"the node with {streams} streams did not report in {timeout:g} s")
        try:
            result: dict[str, Any] = conn.recv()
        except EOFError as exc:
            raise BenchError(f"the node with {streams} streams exited early") from exc
    finally:
        node.join(30)
        if node.is_alive():
            node.kill()
            node.join(5)
        conn.close()
    pressure_after = cpu_pressure_us()
    pressure = (
        (pressure_after - pressure_before) / 1e6 / (time.monotonic() - wall_before)
        if pressure_before is not None and pressure_after is not None
        else None
    )
    if "error" in result:
        raise BenchError(f"the node with {streams} streams failed: {result['error']}")
    figures = receiver.end(result["start_ns"], result["end_ns"], timeout=60)
    sent = int(result["frames_sent"])
    packets = int(figures["packets"])
    lost = max(sent - packets, int(figures["gap_lost"]))
    verdict = Verdict.PASSED
    notes = []
    if result["scheduler_errors"]:
        verdict = Verdict.NODE_FAILED
        notes.append(f"{result['scheduler_errors']} playbacks failed")
    elif lost > 0 or figures["streams_heard"] < streams:
        verdict = Verdict.LOST
        drops = figures["receiver_drops"]
        if figures["streams_heard"] < streams:
            notes.append(f"{streams - figures['streams_heard']} streams unheard")
        if drops:
            notes.append(f"{drops} dropped by the receiver's socket")
    # Frames the scheduler dropped were due and never sent: count them as late packets.
    dropped = int(result["skipped_ticks"]) * streams
    late = int(figures["late"]) + dropped
    late_ratio = late / (packets + dropped) if packets + dropped else 0.0
    if verdict is Verdict.PASSED and late_ratio > MAX_LATE_RATIO:
        verdict = Verdict.LATE
    cpu_s = result["user_s"] + result["system_s"]
    return StepResult(
        streams=streams,
        sent=sent,
        packets=packets,
        lost=lost,
        late=late,
        late_ratio=late_ratio,
        late_slots=int(figures["late_slots"]),
        tick_spread_ms=float(figures["tick_spread_ms"]),
        dropped_frames=dropped,
        max_lateness_ms=float(figures["max_lateness_ms"]),
        p99_lateness_ms=float(figures["p99_lateness_ms"]),
        streams_heard=int(figures["streams_heard"]),
        streams_with_late=int(figures["streams_with_late"]),
        node_cpu=cpu_s / result["wall_s"],
        node_user_s=result["user_s"],
        node_system_s=result["system_s"],
        window_s=result["wall_s"],
        late_ticks=int(result["late_ticks"]),
        skipped_ticks=int(result["skipped_ticks"]),
        max_lateness_us=int(result["max_lateness_us"]),
        ticks=int(result["ticks"]),
        receiver_cpu=float(figures["receiver_cpu"]),
        receiver_drops=figures["receiver_drops"],
        setup_s=float(result["setup_s"]),
        node_rss_mib=result["max_rss_kib"] / 1024,
        node_wait=result["runqueue_wait_s"] / result["wall_s"],
        gc_collections=int(result["gc_collections"]),
        gc_max_ms=float(result["gc_max_ms"]),
        cpu_pressure=pressure,
        verdict=verdict,
        note="; ".join(notes),
    )


def max_streams_for_fds() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return 1 << 30
    return (hard - FD_RESERVE) // FDS_PER_CALL


def port_capacity() -> int:
    pairs = sum((high - low + 1) // 2 for low, high in (PORT_RANGE, PORT_RANGE_HIGH))
    return pairs // 2  # two pairs per call


@dataclass(frozen=True)
class SearchResult:
    steps: tuple[StepResult, ...]
    end: str
    receive_buffer: int
    receive_buffer_forced: bool

    @property
    def best(self) -> StepResult | None:
        passing = [step for step in self.steps if step.passed]
        return passing[-1] if passing else None


def search(config: SearchConfig) -> SearchResult:
    context = multiprocessing.get_context("spawn")
    receiver = Receiver(context, config.workdir / "raw" if config.keep_raw else None)
    limit = min(max_streams_for_fds(), port_capacity())
    print(
        f"receiver: one socket on {HOST}:{receiver.port}, SO_TIMESTAMPNS, receive buffer "
        f"{receiver.receive_buffer // (1024 * 1024)} MiB"
        f"{'' if receiver.forced else ' (not forced: not root, capped by net.core.rmem_max)'}",
        flush=True,
    )
    if config.node_realtime:
        priority = f"SCHED_RR priority {REALTIME_PRIORITY} (a core other work cannot take)"
    else:
        priority = f"normal priority, nice {config.node_nice:+d}"
    print(
        f"node: a fresh uvloop process per step, {priority}; relay ports "
        f"{PORT_RANGE[0]}-{PORT_RANGE[1]}, {PORT_RANGE_HIGH[0]}-{PORT_RANGE_HIGH[1]}",
        flush=True,
    )
    print(STEP_HEADER, flush=True)
    steps: list[StepResult] = []
    started = time.monotonic()
    end = "top of the ladder reached"
    try:
        for streams in config.steps:
            if streams > limit:
                end = (
                    f"{streams} streams need more sockets or ports than this node may have "
                    f"(at most {limit}: {FDS_PER_CALL} sockets and 2 port pairs per call)"
                )
                break
            if time.monotonic() - started > config.budget_s:
                end = f"time budget of {config.budget_s:g} s spent"
                break
            step = run_step(context, receiver, streams, config)
            steps.append(step)
            print(format_step(step), flush=True)
            if not step.passed:
                end = f"a step failed ({step.verdict.value})"
                break
            if step.saturated:
                end = f"the node saturated ({step.node_cpu:.0%} of a core)"
                break
    finally:
        receiver.close()
    result = SearchResult(
        steps=tuple(steps),
        end=end,
        receive_buffer=receiver.receive_buffer,
        receive_buffer_forced=receiver.forced,
    )
    write_json(config.workdir / "streams.json", config, result)
    return result


# A failing step whose node waited this long for a CPU says more about the machine.
CONTENTION_WAIT = 0.02


def summary_lines(result: SearchResult, config: SearchConfig) -> list[str]:
    cores = os.cpu_count()
    lines = [f"search ended: {result.end}"]
    last = result.steps[-1] if result.steps else None
    if (
        last is not None
        and not last.passed
        and not last.saturated
        and not config.node_realtime
        and last.node_wait >= CONTENTION_WAIT
    ):
        pressure = (
            "" if last.cpu_pressure is None else f"; machine CPU pressure {last.cpu_pressure:.0%}"
        )
        lines.append(
            f"note: in the failing step the node was runnable but waiting for a CPU "
            f"{last.node_wait:.0%} of the time{pressure}: lateness from other work on the "
            "machine; --node-realtime gives the node a core it cannot lose"
        )
    if last is not None and not last.passed and last.saturated:
        needed = last.streams * last.cpu_us_per_packet * 50 / 1e6
        lines.append(
            f"limit: CPU. The failing step's {last.streams} streams cost "
            f"{last.cpu_us_per_packet:.1f} us per packet, {needed:.0%} of a core for the "
            f"packets alone; the node ran at {last.node_cpu:.0%} and fell behind"
        )
    best = result.best
    if best is None:
        lines.append("no step passed")
        return lines
    per_core = best.streams / best.node_cpu if best.node_cpu > 0 else float("inf")
    per_stream = best.node_cpu / best.streams
    lines.append(
        f"highest passing N: {best.streams} streams in one node process at "
        f"{best.node_cpu:.0%} of one core ({cores} cores shared with the receiver and other "
        f"work), {best.late_ratio:.3%} of packets > 10 ms late, max lateness "
        f"{best.max_lateness_ms:.1f} ms, 0 lost"
    )
    lines.append(
        f"streams per core: {per_core:.0f} (= N / node CPU share; goal >= 500); CPU per "
        f"stream {per_stream:.4%} of a core, {best.cpu_us_per_packet:.1f} us of CPU per packet "
        "(user + system, the loopback send included)"
    )
    return lines


def write_json(path: Path, config: SearchConfig, result: SearchResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def encode(value: object) -> object:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot encode {type(value).__name__}")

    document = {
        "config": asdict(config),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "result": asdict(result),
        "best": result.best.streams if result.best else None,
    }
    path.write_text(json.dumps(document, indent=2, default=encode))

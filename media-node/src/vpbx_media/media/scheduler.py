"""Pacing of every generated stream of a node from one 20 ms timer.

A timer per playing leg would mean hundreds of timer handles re-armed 50 times a second
and streams drifting apart; so each node has ONE `PacedScheduler`, and every tick it
asks each `Playback` for its next frame and sends it.

Time comes from the event loop's monotonic clock. Tick n is due at start + n * 20 ms,
computed from the start rather than from the previous tick, so lateness never adds up
to drift. When the loop wakes late (a GC pause, a busy loop), the ticks whose time has
passed are run back to back, up to `max_burst`, so the receivers' jitter buffers get
the frames they are missing; beyond that the oldest ticks are dropped: every stream's
timestamp moves on over the gap and its next packet starts a new talkspurt, while its
source resumes where it was (a prompt loses no words). Late and dropped ticks and the
largest lateness are counted.

The per-tick path is a loop over a cached tuple of streams: a source index step, a
header written into a reused buffer and the send callable; no logging, and no objects
besides the datagram (and the integers Python makes for counters). Streams may be
added or removed at any time, also from a completion callback during a tick: the tuple
is rebuilt on the next tick, and a stream removed during a tick is skipped for the rest
of it. The timer only runs while there are streams, so an idle node does not wake 50
times a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .player import FrameSource
from .rtpout import RtpStream

logger = logging.getLogger(__name__)

FRAME_INTERVAL = 0.020
# A tick this late counts as late (half a frame: a jitter buffer starts to notice).
LATE_THRESHOLD = 0.010
# Frames a stream may get back to back when the loop wakes late: 100 ms of catch-up,
# about what a jitter buffer absorbs; anything later is dropped.
MAX_BURST = 5


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class TimerLoop(Protocol):
    """What the scheduler needs of an event loop (a test passes a fake clock)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


Send = Callable[[bytes], object]
OnFinished = Callable[["Playback"], object]


class Paced(Protocol):
    """What the scheduler ticks: a `Playback`, or a conference mixer sending one frame to
    each of its parties per tick.

    `tick()` sends this frame time's packets and returns how many; `skip(frames)` lets
    frame times pass without ticks (dropped ticks, or time spent removed). `removed_at`
    belongs to the scheduler: the loop time it last removed the stream (None: never, or
    added again since).
    """

    removed_at: float | None

    def tick(self) -> int: ...

    def skip(self, frames: int) -> None: ...


class Playback:
    """One leg's generated audio: an `RtpStream` fed from a `FrameSource`.

    `send` takes each datagram (in the node a `DatagramTransport.sendto` bound to the
    leg's current address). With no source, or a source with nothing to send this tick,
    no packet goes out but the stream's timestamp moves on. When a source finishes, the
    `on_finished` callback given to `play()` runs (inside the tick: it should only
    switch sources or schedule work); a source it starts plays from the same tick.
    """

    __slots__ = ("_on_finished", "_send", "_source", "removed_at", "rtp")

    def __init__(self, rtp: RtpStream, send: Send) -> None:
        self.rtp = rtp
        self._send = send
        self._source: FrameSource | None = None
        self._on_finished: OnFinished | None = None
        self.removed_at: float | None = None

    @property
    def frames_sent(self) -> int:
        return self.rtp.packets

    @property
    def source(self) -> FrameSource | None:
        return self._source

    def play(self, source: FrameSource | None, on_finished: OnFinished | None = None) -> None:
        """Switch to `source` (None: silence); the next packet starts a talkspurt."""
        if source is not None and source.codec.payload_type != self.rtp.payload_type:
            raise ValueError(
                f"a {source.codec.value} source cannot play on a stream of payload type "
                f"{self.rtp.payload_type}"
            )
        self._source = source
        self._on_finished = on_finished
        self.rtp.mark()

    def stop(self) -> None:
        """Stop sending (the completion callback does not run)."""
        self.play(None)

    def tick(self) -> int:
        """Send this frame time's packet, if any; returns the number of packets sent."""
        source = self._source
        if source is not None:
            payload = source.next_frame()
            if payload is not None:
                self._send(self.rtp.packet(payload))
                return 1
            if source.finished:
                return self._finish(source)
        self.rtp.skip()
        return 0

    def _finish(self, source: FrameSource) -> int:
        callback = self._on_finished
        self._source = None
        self._on_finished = None
        if callback is not None:
            callback(self)
            # The callback may have started the next prompt: no gap between them.
            following = self._source
            if following is not None and following is not source:
                payload = following.next_frame()
                if payload is not None:
                    self._send(self.rtp.packet(payload))
                    return 1
        self.rtp.skip()
        return 0

    def skip(self, frames: int) -> None:
        """Frame times that passed without a tick: no packets, the clock goes on."""
        self.rtp.skip(frames)


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    streams: int
    ticks: int
    frames_sent: int
    late_ticks: int
    skipped_ticks: int
    max_lateness_us: int
    errors: int


class PacedScheduler:
    """The node's one 20 ms clock for every `Playback` (and every other `Paced` stream, such
    as a conference mixer); `start()` it on the running loop."""

    def __init__(
        self,
        *,
        interval: float = FRAME_INTERVAL,
        max_burst: int = MAX_BURST,
        late_threshold: float = LATE_THRESHOLD,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"tick interval {interval} must be positive")
        if max_burst < 1:
            raise ValueError(f"max_burst {max_burst} must be at least 1")
        self.interval = interval
        self.max_burst = max_burst
        self.late_threshold = late_threshold
        self._loop: TimerLoop | None = None
        self._handle: TimerHandle | None = None
        self._streams: dict[Paced, None] = {}
        self._snapshot: tuple[Paced, ...] | None = None
        # Tick n is due at _origin + n * interval; _next is the next tick's n.
        self._origin = 0.0
        self._next = 0
        self.ticks = 0
        self.frames_sent = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.max_lateness_us = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._loop is not None

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, playback: object) -> bool:
        return playback in self._streams

    def start(self, loop: TimerLoop | None = None) -> None:
        if self._loop is not None:
            return
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        if self._streams:
            self._arm(self._loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    def add(self, playback: Paced) -> None:
        """Start ticking `playback` (from the next tick on)."""
        if playback in self._streams:
            return
        loop = self._loop
        if playback.removed_at is not None and loop is not None:
            # Back after a pause: its clock has to cover the time it was away.
            away = round((loop.time() - playback.removed_at) / self.interval)
            if away > 0:
                playback.skip(away)
        playback.removed_at = None
        self._streams[playback] = None
        self._snapshot = None
        if loop is not None and self._handle is None:
            self._arm(loop)

    def remove(self, playback: Paced) -> None:
        """Stop ticking `playback`; safe inside a tick or a completion callback."""
        if playback in self._streams:
            del self._streams[playback]
            self._snapshot = None
            playback.removed_at = self._loop.time() if self._loop is not None else None

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            streams=len(self._streams),
            ticks=self.ticks,
            frames_sent=self.frames_sent,
            late_ticks=self.late_ticks,
            skipped_ticks=self.skipped_ticks,
            max_lateness_us=self.max_lateness_us,
            errors=self.errors,
        )

    def _arm(self, loop: TimerLoop) -> None:
        self._origin = loop.time()
        self._next = 1
        self._handle = loop.call_at(self._origin + self.interval, self._on_timer)

    def _on_timer(self) -> None:
        loop = self._loop
        if loop is None:
            return
        interval = self.interval
        due_at = self._origin + self._next * interval
        lateness = loop.time() - due_at
        # The loop may run a timer up to its clock resolution early: that is on time.
        due = int(lateness / interval) + 1 if lateness > 0 else 1
        if lateness > self.late_threshold:
            self.late_ticks += 1
        lateness_us = int(lateness * 1_000_000)
        if lateness_us > self.max_lateness_us:
            self.max_lateness_us = lateness_us
        if due > self.max_burst:
            dropped = due - self.max_burst
            self.skipped_ticks += dropped
            for playback in tuple(self._streams):
                playback.skip(dropped)
            due = self.max_burst
            self._next += dropped
        for _ in range(due):
            self._tick()
        self._next += due
        if self._loop is not loop:
            return  # a callback stopped the scheduler
        if not self._streams:
            # Idle until the next add(); it restarts the clock.
            self._handle = None
            return
        self._handle = loop.call_at(self._origin + self._next * interval, self._on_timer)

    def _tick(self) -> None:
        streams = self._snapshot
        if streams is None:
            streams = self._snapshot = tuple(self._streams)
        members = self._streams
        sent = 0
        for playback in streams:
            if playback in members:
                try:
                    sent += playback.tick()
                except Exception:
                    # A failing send or callback must not stop every other stream.
                    self.errors += 1
                    self.remove(playback)
                    logger.exception("playback %r failed and was removed", playback)
        self.frames_sent += sent
        self.ticks += 1

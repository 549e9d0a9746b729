"""Frame sources and the paced scheduler, on a fake clock and once in real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from vpbx_media.media.g711 import Codec
from vpbx_media.media.player import Loop, PlayOnce
from vpbx_media.media.prompt import Prompt
from vpbx_media.media.rtpout import RtpStream
from vpbx_media.media.scheduler import PacedScheduler, Playback
from vpbx_media.rtp.packet import RtpPacket

INTERVAL = 0.020


def prompt(count: int, codec: Codec = Codec.PCMU, first: int = 0) -> Prompt:
    """A prompt whose frame i is filled with the octet first + i (easy to follow)."""
    return Prompt(codec, tuple(bytes([first + i]) * 160 for i in range(count)))


# --- sources ------------------------------------------------------------------------------


def test_play_once_hands_out_the_prompt_frames_then_finishes() -> None:
    source = PlayOnce(prompt(3))
    assert not source.finished
    frames = [source.next_frame() for _ in range(3)]
    assert [f[0] for f in frames if f] == [0, 1, 2]
    assert source.finished
    assert source.next_frame() is None
    assert source.position == 3


def test_play_once_plays_a_list_of_prompts_in_order() -> None:
    source = PlayOnce([prompt(2), prompt(1, first=10), prompt(2, first=20)])
    frames = []
    while (frame := source.next_frame()) is not None:
        frames.append(frame[0])
    assert frames == [0, 1, 10, 20, 21]


def test_loop_wraps_and_reuses_the_prompt_frames() -> None:
    music = prompt(3)
    source = Loop(music, start=1)
    frames = [source.next_frame() for _ in range(7)]
    assert [f[0] for f in frames] == [1, 2, 0, 1, 2, 0, 1]
    # The very objects of the prompt: nothing is built per packet.
    assert all(any(f is g for g in music.frames) for f in frames)
    assert not source.finished
    assert source.position == 2


def test_source_errors() -> None:
    with pytest.raises(ValueError, match="prompts mix PCMU and PCMA"):
        PlayOnce([prompt(1), prompt(1, Codec.PCMA)])
    with pytest.raises(ValueError, match="no prompts given"):
        PlayOnce([])
    with pytest.raises(ValueError, match="cannot loop an empty prompt"):
        Loop(prompt(0))


# --- a fake loop --------------------------------------------------------------------------


@dataclass
class FakeHandle:
    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    """Time moves only when a test fires the scheduler's timer."""

    now: float = 1000.0
    handles: list[FakeHandle] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle

    @property
    def pending(self) -> FakeHandle | None:
        live = [h for h in self.handles if not h.cancelled]
        assert len(live) <= 1, "the scheduler keeps at most one timer"
        return live[0] if live else None

    def fire(self, late: float = 0.0) -> None:
        """Run the pending timer `late` seconds after it was due."""
        handle = self.pending
        assert handle is not None, "no timer armed"
        self.handles.remove(handle)
        self.now = handle.when + late
        handle.callback()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Wire:
    """What a playback sent, parsed."""

    packets: list[RtpPacket] = field(default_factory=list)

    def send(self, datagram: bytes) -> None:
        self.packets.append(RtpPacket.parse(datagram))

    @property
    def payload_marks(self) -> list[int]:
        return [p.payload[0] for p in self.packets]


def playback(wire: Wire, *, timestamp: int = 0, sequence: int = 0) -> Playback:
    return Playback(RtpStream(0, ssrc=42, sequence=sequence, timestamp=timestamp), wire.send)


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()


@pytest.fixture
def scheduler(loop: FakeLoop) -> PacedScheduler:
    scheduler = PacedScheduler()
    scheduler.start(loop)
    return scheduler


# --- pacing -------------------------------------------------------------------------------


def test_timer_runs_only_while_there_are_streams(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    assert loop.pending is None
    wire = Wire()
    player = playback(wire)
    player.play(Loop(prompt(2)))
    scheduler.add(player)
    handle = loop.pending
    assert handle is not None
    assert handle.when == pytest.approx(1000.0 + INTERVAL)
    loop.fire()
    assert len(wire.packets) == 1
    scheduler.remove(player)
    loop.fire()  # the tick already armed runs, finds nobody and does not re-arm
    assert loop.pending is None
    assert len(wire.packets) == 1


def test_each_tick_sends_one_frame_per_stream(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    wires = [Wire(), Wire()]
    for wire in wires:
        player = playback(wire, timestamp=8000, sequence=65534)
        player.play(Loop(prompt(3)))
        scheduler.add(player)
    for _ in range(4):
        loop.fire()
    for wire in wires:
        assert wire.payload_marks == [0, 1, 2, 0]
        assert [p.sequence_number for p in wire.packets] == [65534, 65535, 0, 1]
        assert [p.timestamp for p in wire.packets] == [8000, 8160, 8320, 8480]
        assert [p.marker for p in wire.packets] == [True, False, False, False]
    assert (scheduler.ticks, scheduler.frames_sent, scheduler.late_ticks) == (4, 8, 0)


def test_ticks_stay_on_the_grid_without_drift(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    player = playback(Wire())
    player.play(Loop(prompt(1)))
    scheduler.add(player)
    start = loop.now
    for index in range(1, 501):
        handle = loop.pending
        assert handle is not None
        assert handle.when == pytest.approx(start + index * INTERVAL, abs=1e-9)
        # Wake a little late every time: lateness must not accumulate.
        loop.fire(late=0.004)
    assert scheduler.late_ticks == 0
    assert scheduler.max_lateness_us == pytest.approx(4000, abs=1)


def test_late_tick_catches_up_back_to_back(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0)
    player.play(Loop(prompt(10)))
    scheduler.add(player)
    loop.fire()
    loop.fire(late=0.045)  # this tick and the two after it are due
    assert wire.payload_marks == [0, 1, 2, 3]
    assert [p.timestamp for p in wire.packets] == [0, 160, 320, 480]
    assert (scheduler.late_ticks, scheduler.skipped_ticks) == (1, 0)
    assert scheduler.max_lateness_us == pytest.approx(45_000, abs=1)
    # The next tick is the one after those three, back on the grid.
    handle = loop.pending
    assert handle is not None
    assert handle.when == pytest.approx(1000.0 + 5 * INTERVAL)


def test_very_late_tick_drops_the_oldest_frames_times(
    loop: FakeLoop, scheduler: PacedScheduler
) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0, sequence=0)
    player.play(Loop(prompt(50)))
    scheduler.add(player)
    loop.fire()
    loop.fire(late=0.305)  # 16 ticks due: 5 sent, 11 dropped
    assert (scheduler.late_ticks, scheduler.skipped_ticks) == (1, 11)
    assert scheduler.ticks == 6
    assert wire.payload_marks == [0, 1, 2, 3, 4, 5]  # the music goes on where it was
    timestamps = [p.timestamp for p in wire.packets]
    assert timestamps == [0, 160 * 12, 160 * 13, 160 * 14, 160 * 15, 160 * 16]
    assert [p.marker for p in wire.packets] == [True, True, False, False, False, False]
    assert [p.sequence_number for p in wire.packets] == [0, 1, 2, 3, 4, 5]
    loop.fire()
    assert wire.packets[-1].timestamp == 160 * 17


def test_silence_moves_the_clock_and_the_next_source_starts_a_talkspurt(
    loop: FakeLoop, scheduler: PacedScheduler
) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0)
    player.play(Loop(prompt(5)))
    scheduler.add(player)
    loop.fire()
    loop.fire()
    player.stop()
    loop.fire()
    loop.fire()
    player.play(Loop(prompt(5, first=100)))
    loop.fire()
    assert wire.payload_marks == [0, 1, 100]
    assert [p.timestamp for p in wire.packets] == [0, 160, 640]
    assert [p.marker for p in wire.packets] == [True, False, True]


def test_switching_source_marks_the_next_packet(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0)
    player.play(Loop(prompt(5)))
    scheduler.add(player)
    loop.fire()
    player.play(Loop(prompt(5, first=50)))
    loop.fire()
    assert [(p.payload[0], p.timestamp, p.marker) for p in wire.packets] == [
        (0, 0, True),
        (50, 160, True),
    ]


def test_finished_prompt_calls_back_once(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    wire = Wire()
    player = playback(wire)
    done: list[Playback] = []
    player.play(PlayOnce(prompt(2)), done.append)
    scheduler.add(player)
    for _ in range(5):
        loop.fire()
    assert wire.payload_marks == [0, 1]
    assert done == [player]
    assert player.source is None
    assert player.frames_sent == 2


def test_callback_chains_the_next_prompt_without_a_gap(
    loop: FakeLoop, scheduler: PacedScheduler
) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0)
    player.play(PlayOnce(prompt(2)), lambda p: p.play(PlayOnce(prompt(2, first=10))))
    scheduler.add(player)
    for _ in range(5):
        loop.fire()
    assert wire.payload_marks == [0, 1, 10, 11]
    assert [p.timestamp for p in wire.packets] == [0, 160, 320, 480]
    assert [p.marker for p in wire.packets] == [True, False, True, False]


def test_removal_inside_a_callback_is_safe(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    wires = [Wire(), Wire(), Wire()]
    players = [playback(wire) for wire in wires]

    def finished(player: Playback) -> None:
        # Remove itself and the next stream, which this tick has not reached yet, and
        # add a new one (it starts on the next tick).
        scheduler.remove(player)
        scheduler.remove(players[1])
        scheduler.add(late_comer)

    late_wire = Wire()
    late_comer = playback(late_wire)
    late_comer.play(Loop(prompt(3)))
    players[0].play(PlayOnce(prompt(1)), finished)
    players[1].play(Loop(prompt(3)))
    players[2].play(Loop(prompt(3)))
    for player in players:
        scheduler.add(player)
    loop.fire()  # player 0 sends its only frame
    loop.fire()  # player 0 finishes: callback removes 0 and 1 before 1 is ticked
    loop.fire()
    assert wires[0].payload_marks == [0]
    assert wires[1].payload_marks == [0]
    assert wires[2].payload_marks == [0, 1, 2]
    assert late_wire.payload_marks == [0]
    assert len(scheduler) == 2
    assert players[0] not in scheduler
    assert late_comer in scheduler


def test_a_failing_stream_is_removed_and_the_others_go_on(
    loop: FakeLoop, scheduler: PacedScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(datagram: bytes) -> None:
        raise OSError("socket closed")

    bad = Playback(RtpStream(0), broken)
    bad.play(Loop(prompt(1)))
    good_wire = Wire()
    good = playback(good_wire)
    good.play(Loop(prompt(3)))
    scheduler.add(bad)
    scheduler.add(good)
    loop.fire()
    loop.fire()
    assert scheduler.errors == 1
    assert bad not in scheduler
    assert good_wire.payload_marks == [0, 1]
    assert "failed and was removed" in caplog.text


def test_readded_stream_covers_the_time_it_was_away(
    loop: FakeLoop, scheduler: PacedScheduler
) -> None:
    wire = Wire()
    player = playback(wire, timestamp=0)
    player.play(Loop(prompt(5)))
    scheduler.add(player)
    loop.fire()
    scheduler.remove(player)
    loop.fire()  # idles
    loop.advance(1.0)
    scheduler.add(player)
    loop.fire()
    second = wire.packets[-1]
    assert second.marker
    # Removed at t=1000.02 after one frame, its next frame was due at 1000.04. Re-added
    # at 1001.04, its next frame goes at 1001.06: 51 frame times later.
    assert second.timestamp == 160 + 51 * 160


def test_stop_cancels_the_timer(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    player = playback(Wire())
    player.play(Loop(prompt(1)))
    scheduler.add(player)
    assert scheduler.running
    scheduler.stop()
    assert loop.pending is None
    assert not scheduler.running
    scheduler.start(loop)
    assert loop.pending is not None


def test_stats_and_settings(scheduler: PacedScheduler, loop: FakeLoop) -> None:
    player = playback(Wire())
    player.play(Loop(prompt(1)))
    scheduler.add(player)
    scheduler.add(player)  # twice is once
    loop.fire(late=0.012)
    stats = scheduler.stats()
    assert (stats.streams, stats.ticks, stats.frames_sent, stats.late_ticks) == (1, 1, 1, 1)
    assert stats.max_lateness_us == pytest.approx(12_000, abs=1)
    with pytest.raises(ValueError, match="must be positive"):
        PacedScheduler(interval=0)
    with pytest.raises(ValueError, match="at least 1"):
        PacedScheduler(max_burst=0)


def test_codec_must_match_the_stream() -> None:
    player = playback(Wire())
    with pytest.raises(ValueError, match="a PCMA source cannot play on a stream of payload"):
        player.play(Loop(prompt(1, Codec.PCMA)))


# --- real time ----------------------------------------------------------------------------


async def test_real_time_pacing() -> None:
    loop = asyncio.get_running_loop()
    scheduler = PacedScheduler()
    scheduler.start()
    arrivals: list[float] = []
    done = loop.create_future()
    player = Playback(RtpStream(0), lambda datagram: arrivals.append(loop.time()))
    player.play(PlayOnce(prompt(15)), lambda p: done.set_result(loop.time()))
    started = loop.time()
    scheduler.add(player)
    try:
        finished = await asyncio.wait_for(done, timeout=3.0)
    finally:
        scheduler.stop()
    # 15 frames of 20 ms; the callback runs on the 16th tick.
    assert len(arrivals) == 15
    assert 0.30 <= finished - started < 0.60
    # Frames leave on the 20 ms grid: the spread from first to last is 14 intervals,
    # give or take a late wake-up (caught up back to back).
    assert 0.20 <= arrivals[-1] - arrivals[0] < 0.45
    assert scheduler.errors == 0


def test_stop_inside_a_callback_does_not_rearm(loop: FakeLoop, scheduler: PacedScheduler) -> None:
    player = playback(Wire())
    player.play(PlayOnce(prompt(1)), lambda p: scheduler.stop())
    scheduler.add(player)
    loop.fire()
    loop.fire()
    assert not scheduler.running
    assert loop.pending is None

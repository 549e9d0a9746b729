"""Prompts: audio encoded once per codec into ready-to-send 20 ms payloads.

A prompt, a tone cadence or music on hold is played to many legs, over and over; the
per-packet path should only pick the next payload, never encode. So a `Prompt` is a
tuple of 160-octet G.711 frames, built once per (source, codec) and kept in a bounded
`PromptCache`. Identical frames (the silence of a cadence, mostly) share one bytes
object, so a 5 s ringback cycle holds 50 tone frames and one silence frame.

Playing them (once, looped, with a completion callback) is `player.py`'s job.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import wav
from .g711 import FRAME_SAMPLES, SAMPLE_RATE, Codec, PcmBuffer
from .tones import Cadence

FRAME_BYTES = FRAME_SAMPLES  # G.711: one octet per sample
FRAME_MS = 1000 * FRAME_SAMPLES // SAMPLE_RATE

# A cadence whose cycle is not a whole number of frames is repeated until it is; beyond
# this many repetitions its last frame is padded with silence instead.
_MAX_CADENCE_REPEATS = 8


def _intern_frames(frames: Iterable[bytes]) -> tuple[bytes, ...]:
    seen: dict[bytes, bytes] = {}
    return tuple(seen.setdefault(frame, frame) for frame in frames)


@dataclass(frozen=True, slots=True, eq=False)
class Prompt:
    """Audio as a tuple of 160-octet payloads of one codec, each one 20 ms."""

    codec: Codec
    frames: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for index, frame in enumerate(self.frames):
            if len(frame) != FRAME_BYTES:
                raise ValueError(f"frame {index} has {len(frame)} octets, not {FRAME_BYTES}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def duration_ms(self) -> int:
        return len(self.frames) * FRAME_MS

    @property
    def size_bytes(self) -> int:
        """Octets held: each distinct frame object counted once."""
        return FRAME_BYTES * len({id(frame) for frame in self.frames})

    @classmethod
    def from_pcm(cls, pcm: PcmBuffer, codec: Codec) -> Prompt:
        """Encode PCM16 at 8 kHz; a last partial frame is padded with silence."""
        encoded = codec.encode(pcm)
        remainder = len(encoded) % FRAME_BYTES
        if remainder:
            encoded += codec.silence_frame(FRAME_BYTES - remainder)
        return cls(
            codec,
            _intern_frames(
                encoded[start : start + FRAME_BYTES]
                for start in range(0, len(encoded), FRAME_BYTES)
            ),
        )

    @classmethod
    def from_wav(cls, path: str | os.PathLike[str], codec: Codec) -> Prompt:
        """An 8 kHz mono 16-bit PCM WAV file; anything else raises `wav.WavFormatError`."""
        return cls.from_pcm(wav.read_mono_8k(path), codec)

    @classmethod
    def from_cadence(cls, cadence: Cadence, codec: Codec) -> Prompt:
        """One cycle of a cadence as whole frames, so that looping it keeps the rhythm."""
        cycle = cadence.render()
        repeats = FRAME_SAMPLES // math.gcd(len(cycle), FRAME_SAMPLES)
        if 1 < repeats <= _MAX_CADENCE_REPEATS:
            cycle = cycle * repeats
        return cls.from_pcm(cycle, codec)

    @classmethod
    def silence(cls, codec: Codec, frames: int = 1) -> Prompt:
        return cls(codec, (codec.silence_frame(),) * frames)


PromptKey = tuple[str, Codec]


class PromptCache:
    """Prompts by (source id, codec), least recently used first out beyond `max_bytes`.

    A prompt evicted while legs still play it stays alive through their references; the
    cache only stops handing it out. A prompt larger than the whole cache is built and
    returned but not kept.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache size {max_bytes} must be positive")
        self.max_bytes = max_bytes
        self._prompts: OrderedDict[PromptKey, Prompt] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._prompts)

    def __contains__(self, key: PromptKey) -> bool:
        return key in self._prompts

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, source_id: str, codec: Codec) -> Prompt | None:
        prompt = self._prompts.get((source_id, codec))
        if prompt is None:
            self.misses += 1
            return None
        self.hits += 1
        self._prompts.move_to_end((source_id, codec))
        return prompt

    def put(self, source_id: str, prompt: Prompt) -> None:
        key = (source_id, prompt.codec)
        old = self._prompts.pop(key, None)
        if old is not None:
            self._bytes -= old.size_bytes
        size = prompt.size_bytes
        if size > self.max_bytes:
            return
        self._prompts[key] = prompt
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._prompts.popitem(last=False)
            self._bytes -= evicted.size_bytes
            self.evictions += 1

    def get_or_build(
        self, source_id: str, codec: Codec, build: Callable[[Codec], Prompt]
    ) -> Prompt:
        """The cached prompt, or `build(codec)`'s, which is then cached."""
        prompt = self.get(source_id, codec)
        if prompt is None:
            prompt = build(codec)
            if prompt.codec is not codec:
                raise ValueError(
                    f"prompt {source_id!r} was built as {prompt.codec.value}, not {codec.value}"
                )
            self.put(source_id, prompt)
        return prompt

    def from_pcm(self, source_id: str, codec: Codec, pcm: Callable[[], PcmBuffer]) -> Prompt:
        """Cached prompt of PCM16 that `pcm()` produces (called only on a miss)."""
        return self.get_or_build(source_id, codec, lambda c: Prompt.from_pcm(pcm(), c))

    def from_wav(self, path: str | os.PathLike[str], codec: Codec) -> Prompt:
        """Cached prompt of a WAV file, keyed by its path (a file replaced in place needs
        `put()` or another id to be read again)."""
        return self.get_or_build(os.fspath(path), codec, lambda c: Prompt.from_wav(path, c))

    def from_cadence(self, name: str, cadence: Cadence, codec: Codec) -> Prompt:
        return self.get_or_build(name, codec, lambda c: Prompt.from_cadence(cadence, c))

    def clear(self) -> None:
        self._prompts.clear()
        self._bytes = 0

"""Frame sources: what a playing stream sends next, one 20 ms payload per tick.

A source hands out the prompt's ready-made payload objects in order; it never encodes
or copies, so a thousand legs on hold share one music-on-hold prompt and each tick is
an index step. `next_frame()` returns None for a frame time without a packet; once it
does so with `finished` set, the source is done and the stream calls its completion
callback.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Protocol

from .g711 import Codec
from .prompt import Prompt


class FrameSource(Protocol):
    @property
    def codec(self) -> Codec: ...

    @property
    def finished(self) -> bool: ...

    def next_frame(self) -> bytes | None: ...


def _frames_of(prompts: Prompt | Iterable[Prompt]) -> tuple[Codec, tuple[bytes, ...]]:
    items = (prompts,) if isinstance(prompts, Prompt) else tuple(prompts)
    if not items:
        raise ValueError("nothing to play: no prompts given")
    codec = items[0].codec
    for prompt in items:
        if prompt.codec is not codec:
            raise ValueError(f"prompts mix {codec.value} and {prompt.codec.value}")
    if len(items) == 1:
        return codec, items[0].frames
    return codec, tuple(itertools.chain.from_iterable(prompt.frames for prompt in items))


class PlayOnce:
    """Prompts played one after the other, once (an IVR menu, a voicemail greeting)."""

    __slots__ = ("_codec", "_count", "_frames", "_index")

    def __init__(self, prompts: Prompt | Iterable[Prompt]) -> None:
        self._codec, self._frames = _frames_of(prompts)
        self._count = len(self._frames)
        self._index = 0

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def finished(self) -> bool:
        return self._index >= self._count

    @property
    def position(self) -> int:
        """Frames played so far."""
        return self._index

    def next_frame(self) -> bytes | None:
        index = self._index
        if index < self._count:
            self._index = index + 1
            return self._frames[index]
        return None


class Loop:
    """Prompts played round and round (music on hold, ringback and busy cadences)."""

    __slots__ = ("_codec", "_count", "_frames", "_index")

    def __init__(self, prompts: Prompt | Iterable[Prompt], *, start: int = 0) -> None:
        self._codec, self._frames = _frames_of(prompts)
        self._count = len(self._frames)
        if not self._count:
            raise ValueError("cannot loop an empty prompt")
        self._index = start % self._count

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def finished(self) -> bool:
        return False

    @property
    def position(self) -> int:
        """Index of the next frame, for resuming music where a caller left it."""
        return self._index

    def next_frame(self) -> bytes:
        index = self._index
        frame = self._frames[index]
        index += 1
        self._index = 0 if index == self._count else index
        return frame

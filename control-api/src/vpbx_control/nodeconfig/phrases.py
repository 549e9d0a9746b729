"""The platform's spoken phrases (``vpbx_common.speech``), rendered once and kept on disk.

Nodes build queue announcements from these clips. A clip is rendered with
espeak-ng the first time any node asks for it, converted to the nodes' format
(8 kHz mono 16-bit PCM WAV) and written to ``VPBX_SPEECH_CACHE_DIR``; later
requests, from any node and after restarts, read the file. Concurrent first
requests for one clip render it once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from vpbx_common import speech

from ..ivr.speech import SpeechEngine

logger = logging.getLogger(__name__)

# The espeak-ng voice language of each of the vocabulary's languages.
_VOICE_LANGUAGE = {"ru": "ru-RU", "en": "en-US"}


class UnknownPhraseError(LookupError):
    """The language or the phrase is not in the platform's vocabulary."""


class SpokenPhrases:
    def __init__(self, engine: SpeechEngine, directory: Path) -> None:
        self.engine = engine
        self.directory = directory
        self._rendering: dict[tuple[str, str], asyncio.Lock] = {}

    async def wav(self, language: str, phrase: str) -> bytes:
        """The clip's WAV; UnknownPhraseError, or the engine's errors when it cannot speak."""
        text = speech.phrase_text(language, phrase)
        if text is None:
            raise UnknownPhraseError(f"no phrase {phrase!r} in language {language!r}")
        # Names are the vocabulary's own (letters, digits, dashes): safe as file names.
        path = self.directory / language / f"{phrase}.wav"
        lock = self._rendering.setdefault((language, phrase), asyncio.Lock())
        async with lock:
            cached = await asyncio.to_thread(_read, path)
            if cached is not None:
                return cached
            rendered = await self.engine.render(text, _VOICE_LANGUAGE[language])
            await asyncio.to_thread(_write, path, rendered.audio.wav)
            logger.info(
                "spoken phrase %s/%s rendered (%d ms)", language, phrase, rendered.audio.duration_ms
            )
            return rendered.audio.wav


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader (another API replica on a shared volume) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""Text to speech for IVR prompts: espeak-ng, run when a menu is saved.

A ``tts`` prompt is rendered once, by the control API, and stored like an uploaded
recording (8 kHz mono 16-bit PCM WAV, converted by ``vpbx_common.audio``), so the
media nodes only ever play audio. espeak-ng runs as a subprocess without a shell:
the text goes in on stdin (never on the command line, so no text can be read as an
option), the WAV comes out on stdout, and the run is bounded in time and in how
many run at once. The language (a BCP 47 tag) picks an espeak-ng voice:
``ru-RU`` -> ``ru``, ``en-US`` -> ``en-us``, any other ``en-*`` -> ``en``, and for
other tags the tag itself or its primary language when espeak-ng has such a voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from array import array
from dataclasses import dataclass

from vpbx_common.audio import MAX_DURATION_S, AudioError, ConvertedPrompt, Wav, convert_prompt

logger = logging.getLogger(__name__)

# Renders at once per API process: each is a subprocess plus a CPU-bound conversion.
MAX_CONCURRENT_RENDERS = 2
# A rendering whose loudest sample stays below this is silence (text with nothing to say).
SILENCE_PEAK = 64

_OTHER_LANGUAGE = re.compile(r"\(([A-Za-z0-9-]+) \d+\)")
_SPECIAL_VOICES = {"ru-ru": "ru", "en-us": "en-us"}


class SpeechUnavailableError(Exception):
    """espeak-ng is not installed (or cannot be run) on this machine."""


class SpeechFailedError(Exception):
    """espeak-ng ran but did not produce speech (error exit, timeout, unreadable output)."""


class UnsupportedLanguageError(ValueError):
    """espeak-ng has no voice for the language; the message is for the user."""


class UnspeakableTextError(ValueError):
    """The text renders to silence or to more than a prompt may last; for the user."""


def parse_voices(listing: str) -> frozenset[str]:
    """Language codes in ``espeak-ng --voices`` output, the "Other Languages" included."""
    codes: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 2:
            continue
        codes.add(fields[1].lower())
        codes.update(code.lower() for code in _OTHER_LANGUAGE.findall(line))
    return frozenset(codes)


def voice_for(language: str, voices: frozenset[str]) -> str:
    """The espeak-ng voice for a BCP 47 language tag, from the voices espeak-ng has."""
    tag = language.lower()
    primary = tag.split("-", 1)[0]
    if tag in _SPECIAL_VOICES:
        candidates = [_SPECIAL_VOICES[tag]]
    elif primary == "en":
        candidates = ["en"]
    else:
        candidates = [tag, primary]
    for voice in candidates:
        if voice in voices:
            return voice
    raise UnsupportedLanguageError(f"text to speech has no voice for the language {language!r}")


@dataclass(frozen=True)
class Speech:
    voice: str
    audio: ConvertedPrompt  # 8 kHz mono 16-bit PCM WAV, as the nodes play it


def _peak(wav: bytes) -> int:
    samples = array("h", Wav.parse(wav).frames)
    if sys.byteorder == "big":  # WAV samples are little-endian
        samples.byteswap()
    return max(map(abs, samples), default=0)


def _convert(wav: bytes) -> ConvertedPrompt:
    """espeak-ng's WAV (22.05 kHz) in the node's format; CPU-bound, run in a thread."""
    spoken = Wav.parse(wav).duration_s
    if spoken > MAX_DURATION_S:
        raise UnspeakableTextError(
            f"spoken, the text lasts {spoken:.0f} s; prompts may be at most {MAX_DURATION_S} s"
        )
    converted = convert_prompt(wav)
    if _peak(converted.wav) < SILENCE_PEAK:
        raise UnspeakableTextError("the text has nothing to say: it renders to silence")
    return converted


class SpeechEngine:
    """Runs espeak-ng; one per API process, built by the app factory."""

    def __init__(self, command: str = "espeak-ng", *, timeout_s: float = 20.0) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self._voices: frozenset[str] | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_RENDERS)

    async def voice(self, language: str) -> str:
        """The voice for ``language``; UnsupportedLanguageError when espeak-ng has none."""
        if self._voices is None:
            listing = await self._run(["--voices"], b"")
            self._voices = parse_voices(listing.decode("utf-8", "replace"))
        return voice_for(language, self._voices)

    async def render(self, text: str, language: str) -> Speech:
        """Speak ``text`` and convert it to the node's format (off the event loop)."""
        voice = await self.voice(language)
        async with self._slots:
            # -b 1: the input is UTF-8; --stdin: read all of it, not line by line.
            wav = await self._run(["-v", voice, "-b", "1", "--stdin", "--stdout"], text.encode())
            try:
                converted = await asyncio.to_thread(_convert, wav)
            except AudioError as exc:
                logger.error("espeak-ng (voice %s) wrote audio we cannot read: %s", voice, exc)
                raise SpeechFailedError(f"text to speech produced unreadable audio: {exc}") from exc
        return Speech(voice=voice, audio=converted)

    async def _run(self, args: list[str], stdin: bytes) -> bytes:
        try:
            process = await asyncio.create_subprocess_exec(
                self.command,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # not installed, not executable
            logger.error("text to speech unavailable: cannot run %s: %s", self.command, exc)
            raise SpeechUnavailableError(
                "text to speech is not available on this server (espeak-ng is not installed)"
            ) from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                stdout, stderr = await process.communicate(stdin)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            logger.error("espeak-ng %s ran longer than %.0f s: killed", args[:2], self.timeout_s)
            raise SpeechFailedError("text to speech took too long") from exc
        except BaseException:  # cancelled: leave no process behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            logger.error(
                "espeak-ng %s failed (exit %s): %s",
                args[:2],
                process.returncode,
                stderr.decode("utf-8", "replace").strip()[:500],
            )
            raise SpeechFailedError("text to speech failed")
        return stdout

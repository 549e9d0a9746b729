"""What a node plays to a caller from its config: stored audio, a tone, or speech.

Its own module so that both route-plan steps (a queue's music) and the config's
entries (IVR menus, greetings) can name a prompt without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .targets import ConfigModel


class AudioPrompt(ConfigModel):
    """Audio stored by the control API (an upload, or speech rendered from text)."""

    kind: Literal["audio"] = "audio"
    prompt_id: str


class TonePrompt(ConfigModel):
    kind: Literal["tone"] = "tone"
    frequency_hz: int = 440
    duration_ms: int = 500


class TtsPrompt(ConfigModel):
    """Text to speech; ``prompt_id`` is the audio the control API rendered from it."""

    kind: Literal["tts"] = "tts"
    text: str
    language: str = "ru-RU"
    prompt_id: str | None = None


Prompt = Annotated[AudioPrompt | TonePrompt | TtsPrompt, Field(discriminator="kind")]

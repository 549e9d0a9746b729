"""What every prompt upload shares: size and length limits, conversion, the WAV download.

An IVR menu's own recording (``POST /v1/ivr-menus/{id}/prompt``) and the prompt
library (``POST /v1/prompts``) accept the same files and convert them the same
way (``vpbx_common.audio``); only their limits differ, because hold music runs
longer than a menu's prompt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import Response, UploadFile, status

from vpbx_common.audio import AudioError, ConvertedPrompt, convert_prompt

from .errors import InvalidAudio, PromptTooLarge

_MB = 1024 * 1024

ACCEPTED_AUDIO = (
    "WAV with PCM 8/16/24/32-bit, IEEE float, or G.711 mu-law/A-law samples, mono or "
    "stereo, any sample rate; converted to what the media nodes play (8 kHz mono 16-bit "
    "PCM WAV). Anything else is a 422 naming `file`; a larger file a 413."
)


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int
    max_duration_s: int

    def describe(self) -> str:
        return f"at most {self.max_bytes // _MB} MB and {self.max_duration_s // 60} minutes"


MENU_PROMPT_LIMITS = UploadLimits(max_bytes=10 * _MB, max_duration_s=300)
# Music on hold loops for as long as callers wait: longer tracks than a menu's prompt.
LIBRARY_PROMPT_LIMITS = UploadLimits(max_bytes=20 * _MB, max_duration_s=600)


async def read_upload(file: UploadFile, limits: UploadLimits) -> bytes:
    """The uploaded bytes; one byte beyond the limit is enough to refuse (never all of it)."""
    data = await file.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise PromptTooLarge(limits.max_bytes)
    return data


async def convert_upload(data: bytes, limits: UploadLimits) -> ConvertedPrompt:
    """The upload in the node's format. CPU-bound (pure Python resampling): in a worker
    thread, so the event loop keeps serving other requests meanwhile."""
    try:
        return await asyncio.to_thread(
            convert_prompt, data, max_duration_s=float(limits.max_duration_s)
        )
    except AudioError as exc:
        raise InvalidAudio(str(exc)) from exc


# OpenAPI ``responses=`` of a route answering with wav_response.
WAV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the prompt",
    },
    304: {"description": "If-None-Match matches: unchanged"},
}


def wav_response(audio: bytes, sha256: str, if_none_match: str | None) -> Response:
    """A stored prompt as a download: ``ETag`` is its SHA-256, a matching
    ``If-None-Match`` gets 304 without the audio."""
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=audio, media_type="audio/wav", headers=headers)

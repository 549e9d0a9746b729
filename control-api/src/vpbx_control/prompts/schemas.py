"""Documents of /v1/prompts, and the prompt a queue's music or a voicemail greeting is."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..ivr.models import PromptRow
from ..ivr.schemas import AudioPrompt, Language, SpokenText, TonePrompt
from ..schema_base import StrictInput

PromptName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$", examples=["hold music"])
]

# What a queue plays while the caller waits, or a voicemail box's greeting: a prompt of
# the tenant (from the library) or a tone. No `tts` here: speak the text into the
# library once (POST /v1/prompts/speech) and name the prompt.
AudioOrTone = Annotated[
    AudioPrompt | TonePrompt,
    Field(
        discriminator="kind",
        description=(
            '`{"kind": "audio", "prompt_id"}`: one of the tenant\'s prompts (upload it '
            'with `POST /v1/prompts`), or `{"kind": "tone", "frequency_hz", '
            '"duration_ms"}`: a generated tone'
        ),
        examples=[{"kind": "audio", "prompt_id": "2b8e0c6e-7f0e-4d8b-9c43-6f1f5e2a7d10"}],
    ),
]


class SpeechCreate(StrictInput):
    """Text rendered to speech with espeak-ng and kept in the library like an upload."""

    name: PromptName | None = Field(default=None, description="default: the text's beginning")
    text: SpokenText
    language: Language = "ru-RU"


class PromptOut(BaseModel):
    """One of the tenant's prompts, as stored: 8 kHz mono 16-bit PCM WAV."""

    id: uuid.UUID
    kind: Literal["audio"] = Field(
        default="audio", description='refer to it as `{"kind": "audio", "prompt_id": id}`'
    )
    name: str = Field(description="given on upload, else the uploaded file's name")
    duration_ms: int
    sha256: str = Field(description="of the converted WAV")
    sample_rate: Literal[8000] = 8000
    channels: Literal[1] = 1
    library: bool = Field(
        description=(
            "uploaded to the library: kept until deleted. Otherwise an IVR menu's upload or "
            "rendered speech, deleted once nothing plays it"
        )
    )
    ivr_menu_id: uuid.UUID | None = Field(description="the menu it was uploaded for, if any")
    text: str | None = Field(description="rendered speech: what it says")
    language: str | None = Field(description="rendered speech: in which language")
    audio_url: str = Field(description="the WAV, `GET /v1/prompts/{id}/audio`")
    revision: int
    created_at: dt.datetime

    @classmethod
    def of(cls, row: PromptRow) -> PromptOut:
        return cls(
            id=row.id,
            name=row.name,
            duration_ms=row.duration_ms,
            sha256=row.sha256,
            library=row.library,
            ivr_menu_id=row.ivr_menu_id,
            text=row.text,
            language=row.language,
            audio_url=f"/v1/prompts/{row.id}/audio",
            revision=row.revision,
            created_at=row.created_at,
        )

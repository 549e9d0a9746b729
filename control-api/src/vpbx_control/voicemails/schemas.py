"""Response and request documents of /v1/voicemails."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

from ..db.base import as_utc
from ..schema_base import StrictInput
from .models import VoicemailRow


def audio_url(voicemail_id: uuid.UUID) -> str:
    return f"/v1/voicemails/{voicemail_id}/audio"


class VoicemailOut(BaseModel):
    id: uuid.UUID = Field(description="derived from the tenant and the call: stable")
    call_id: str = Field(description="SIP Call-ID of the call that left it")
    box: str | None = Field(
        description="the box's extension; null for the tenant's general box", examples=["101"]
    )
    user_id: uuid.UUID | None = Field(
        description="the box owner; null for the general box or a box whose user is gone"
    )
    caller: str = Field(description="the calling number", examples=["+79130000001"])
    number: str = Field(description="the number the caller dialled", examples=["+74950000001"])
    city: str = Field(description="city whose media node took the message", examples=["msk"])
    duration_s: float = Field(description="length of the message, seconds", examples=[12.48])
    size_bytes: int = Field(description="size of the stored Ogg/Opus file")
    created_at: dt.datetime = Field(description="when the message was left")
    listened: bool = Field(description="marked listened (PATCH)")
    listened_at: dt.datetime | None
    audio_url: str = Field(
        description="the message, Ogg/Opus mono (Range supported)",
        examples=["/v1/voicemails/0b7f3c52-2d0e-5a5e-8f3a-1f2e3d4c5b6a/audio"],
    )
    wav_url: str = Field(description="the same decoded to 8 kHz 16-bit PCM WAV")

    @classmethod
    def of(cls, row: VoicemailRow) -> VoicemailOut:
        url = audio_url(row.id)
        return cls(
            id=row.id,
            call_id=row.call_id,
            box=row.box or None,
            user_id=row.user_id,
            caller=row.caller,
            number=row.number,
            city=row.city,
            duration_s=row.duration_ms / 1000,
            size_bytes=row.size_bytes,
            created_at=as_utc(row.created_at),
            listened=row.listened_at is not None,
            listened_at=None if row.listened_at is None else as_utc(row.listened_at),
            audio_url=url,
            wav_url=f"{url}?format=wav",
        )


class VoicemailUpdate(StrictInput):
    """Mark a message listened (or not listened again)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"listened": True}]})

    listened: bool = Field(description="true: listened now (kept if already); false: unmark")

"""The call timeline's entries."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field


class CallEntry(BaseModel):
    call_id: str = Field(description="the CDR's call id (control API /v1/calls/{call_id})")
    contact_id: uuid.UUID | None
    direction: str = Field(description="inbound or outbound")
    phone: str = Field(description="the outside party, E.164")
    number: str = Field(description="the tenant's number dialled (inbound)")
    label: str = Field(description="the dialled number's ad-channel label")
    status: str = Field(description="ringing, talking or ended")
    end_reason: str
    answered_by: str = Field(description="the extension that answered, '' if nobody")
    answered_user_id: uuid.UUID | None
    missed: bool
    started_at: dt.datetime
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    talk_s: int = Field(description="seconds from answer to end")
    recording_url: str | None = Field(
        description="the control API's path of the recording (same credential), once ready"
    )
    recording_ms: int
    voicemail_url: str | None = Field(
        description="the control API's path of the voice message left on this call"
    )
    voicemail_ms: int

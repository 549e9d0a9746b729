"""Response documents of /v1/calls and the values of its filters."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from urllib.parse import quote

from pydantic import BaseModel, Field

from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class CallStatus(enum.StrEnum):
    """The `status` filter: answered or missed, or exactly one CDR end reason."""

    ANSWERED = "answered"  # somebody answered in person (answered_at is set)
    MISSED = "missed"  # nobody answered in person (answered_at is null), voicemail included
    COMPLETED = EndReason.COMPLETED.value
    CANCELLED = EndReason.CANCELLED.value
    NO_ANSWER = EndReason.NO_ANSWER.value
    BUSY = EndReason.BUSY.value
    UNAVAILABLE = EndReason.UNAVAILABLE.value
    REJECTED = EndReason.REJECTED.value
    FAILED = EndReason.FAILED.value
    NODE_LOST = EndReason.NODE_LOST.value
    VOICEMAIL = EndReason.VOICEMAIL.value
    NO_CAPACITY = EndReason.NO_CAPACITY.value
    CALLBACK = EndReason.CALLBACK.value

    @property
    def end_reason(self) -> EndReason | None:
        """The end reason this status is, or None for answered/missed."""
        if self in (CallStatus.ANSWERED, CallStatus.MISSED):
            return None
        return EndReason(self.value)


def instant(epoch_ms: int) -> dt.datetime:
    """A CDR time (epoch milliseconds) as an aware UTC datetime, exact to the millisecond."""
    return _EPOCH + dt.timedelta(milliseconds=epoch_ms)


def epoch_ms(moment: dt.datetime) -> int:
    """An aware datetime as epoch milliseconds (floored), as CDR times are stored."""
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


class RouteStepOut(BaseModel):
    after_s: float = Field(description="seconds since routing started", examples=[20.004])
    subject: str = Field(description="what was tried", examples=["group:sales"])
    outcome: str = Field(
        description="entered, ringing, answered, no-answer, failed, skipped, fell-through, "
        "branched, decided, prompted, queued, recorded, hung-up, caller-left or truncated "
        "(text: newer outcomes may appear)",
        examples=["no-answer"],
    )
    member: str | None = Field(description="the extension concerned, if any", examples=["102"])
    detail: str = Field(description="why, in words ('' if nothing to add)")

    @classmethod
    def of(cls, step: RouteStep) -> RouteStepOut:
        return cls(
            after_s=step.after_s,
            subject=step.subject,
            outcome=step.outcome,
            member=step.member,
            detail=step.detail,
        )


def recording_url(call_id: str) -> str:
    """The API path of a call's recording ('/' in the Call-ID as %2F, like every call path)."""
    return f"/v1/calls/{quote(call_id, safe='@')}/recording"


class RecordingLink(BaseModel):
    url: str = Field(
        description="the recording as stored, Ogg/Opus (stereo: caller left, answering "
        "agent right); path on this API, Range supported",
        examples=["/v1/calls/a84b4c76e66710%40carrier/recording"],
    )
    wav_url: str = Field(
        description="the same decoded to 8 kHz 16-bit PCM WAV",
        examples=["/v1/calls/a84b4c76e66710%40carrier/recording?format=wav"],
    )

    @classmethod
    def of(cls, call_id: str) -> RecordingLink:
        url = recording_url(call_id)
        return cls(url=url, wav_url=f"{url}?format=wav")


class CallOut(BaseModel):
    call_id: str = Field(description="SIP Call-ID of the inbound leg", examples=["a84b4c76e66710"])
    direction: Direction
    caller: str = Field(
        description="calling number or, for internal calls, the calling extension",
        examples=["+79130000001"],
    )
    number: str = Field(
        description="the number dialled: the tenant's number (E.164) for inbound calls, the "
        "extension for internal ones",
        examples=["+74951234567"],
    )
    label: str | None = Field(
        description="ad-channel label of the dialled number (call tracking); null if none",
        examples=["billboard-lenina"],
    )
    answered_by: str | None = Field(
        description="extension that answered in person; null if nobody did", examples=["101"]
    )
    answered_by_user_id: uuid.UUID | None = Field(
        description="the user who has that extension now; null if nobody answered or the "
        "extension belongs to no user"
    )
    started_at: dt.datetime = Field(description="when the call reached (or left) the node")
    answered_at: dt.datetime | None = Field(description="null if nobody answered in person")
    ended_at: dt.datetime
    ring_s: float = Field(description="seconds until the answer, or the whole call if none")
    talk_s: float = Field(description="seconds from the answer to the end; 0 if none")
    end_reason: EndReason
    sip_status: int = Field(
        description="final SIP status sent to the caller; 0 if none was (node lost)",
        examples=[200],
    )
    hangup_by: HangupBy
    city: str = Field(description="city whose media node handled the call", examples=["msk"])
    recording: RecordingLink | None = Field(
        default=None,
        description="where to fetch the call's recording, when the call was recorded and the "
        "caller may hear it (supervisors and tenant admins: every recording; an agent: the "
        "calls they answered or placed); null otherwise. The audio is stored shortly after "
        "the call ends: until then the URL answers 404 `recording-not-ready`.",
    )

    @classmethod
    def of(
        cls, record: CallRecord, user_ids: dict[str, uuid.UUID], *, may_hear: bool = True
    ) -> CallOut:
        return cls.model_validate(_fields(record, user_ids, may_hear))


class CallDetailOut(CallOut):
    route: list[RouteStepOut] = Field(
        description="how the routing engine handled the call, oldest step first (at most 200 "
        "steps: the middle of a longer route is one step with outcome `truncated`)"
    )

    @classmethod
    def of(
        cls, record: CallRecord, user_ids: dict[str, uuid.UUID], *, may_hear: bool = True
    ) -> CallDetailOut:
        route = [RouteStepOut.of(step) for step in record.route]
        return cls.model_validate({**_fields(record, user_ids, may_hear), "route": route})


def _fields(
    record: CallRecord, user_ids: dict[str, uuid.UUID], may_hear: bool
) -> dict[str, object]:
    answer_ms = record.answer_ms
    return {
        "call_id": record.call_id,
        "direction": record.direction,
        "caller": record.caller,
        "number": record.dialled,
        "label": record.label or None,
        "answered_by": record.answered_by or None,
        "answered_by_user_id": user_ids.get(record.answered_by) if record.answered_by else None,
        "started_at": instant(record.start_ms),
        "answered_at": None if answer_ms is None else instant(answer_ms),
        "ended_at": instant(record.end_ms),
        "ring_s": record.ring_ms / 1000,
        "talk_s": record.talk_ms / 1000,
        "end_reason": record.end_reason,
        "sip_status": record.sip_status,
        "hangup_by": record.hangup_by,
        "city": record.city,
        "recording": RecordingLink.of(record.call_id) if record.recording and may_hear else None,
    }

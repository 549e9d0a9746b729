"""The call timeline's entries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

from ..deals.schemas import LossReason
from ..scripts.schemas import MAX_STAGES
from ..tasks.schemas import Title


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
    result: CallResult | None = Field(
        default=None, description="the after-call form's result, once stored"
    )


class ScriptMark(BaseModel):
    text: str = Field(description="the stage's text when the result was stored")
    checked: bool


class CallResult(BaseModel):
    """What the agent wrote down after the call, and what it changed."""

    script_id: uuid.UUID | None
    script_name: str
    stages: list[ScriptMark] = Field(description="every stage of the script, in order")
    outcome: str
    deal_id: uuid.UUID | None = Field(description="the deal moved")
    stage_id: uuid.UUID | None = Field(description="the stage it was moved to")
    closed_task_id: uuid.UUID | None
    follow_up_task_id: uuid.UUID | None
    user_id: uuid.UUID | None = Field(description="who stored it (null: an API key)")
    at: dt.datetime


Outcome = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    Field(examples=["Договорились о демо в четверг"]),
]


class DealMove(StrictInput):
    deal_id: uuid.UUID = Field(description="a deal of the call's contact")
    stage_id: uuid.UUID = Field(description="a stage of the deal's pipeline")
    loss_reason: LossReason | None = None


class FollowUp(StrictInput):
    title: Title
    due_at: AwareDatetime = Field(description="with its time zone")


class CallResultCreate(StrictInput):
    """The after-call form. Each action is optional; all of them and the result are stored
    in one transaction, so a refused action (422, 403, 404) leaves nothing behind."""

    script_id: uuid.UUID | None = Field(
        default=None, description="the script followed (GET /v1/calls/{call_id}/script)"
    )
    checked: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        max_length=MAX_STAGES,
        description="indexes of the script's stages that were done",
    )
    outcome: Outcome
    move_deal: DealMove | None = Field(default=None, description="move a deal of the contact")
    close_task_id: uuid.UUID | None = Field(
        default=None,
        description="close a task of the contact or of this call (e.g. its missed-call task) "
        "with the outcome as its result",
    )
    follow_up: FollowUp | None = Field(
        default=None, description="a follow-up task for the caller, on the call's contact"
    )


CallEntry.model_rebuild()  # its result is defined after it

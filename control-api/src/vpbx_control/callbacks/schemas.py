from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from vpbx_common.callbacks import CallbackRecord, CallbackStatus


def _instant(epoch_s: float | None) -> dt.datetime | None:
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC)


class CallbackAttemptOut(BaseModel):
    at: dt.datetime = Field(description="when the agent answered and the caller was dialled")
    agent_extension: str
    call_id: str = Field(description="the attempt's own call in `GET /v1/calls`")
    outcome: str = Field(
        description="`calling` (in progress), `answered`, or why not: `no-answer`, `busy`, "
        "`unavailable`, `rejected`, `failed`"
    )


class CallbackOut(BaseModel):
    id: str
    status: CallbackStatus = Field(
        description="`waiting`: keeps its place in the queue (or waits for the next attempt); "
        "`calling`: an agent is rung, then the caller is called; `connected`: the caller "
        "talked with an agent; `failed`: attempts used up, refused by the outbound policy, "
        "or not served within 4 hours; `cancelled`"
    )
    caller: str = Field(description="the number called back (E.164)")
    dialled_number: str = Field(description="the tenant's number they called, shown to them")
    label: str = Field(description="that number's ad-channel label, '' if none")
    group: str = Field(description="the name of the group whose queue keeps the place")
    booked_at: dt.datetime
    booked_by_call_id: str = Field(description="the caller's call that asked for it")
    position: int | None = Field(description="the caller's place in the queue when booked")
    max_attempts: int
    attempts: list[CallbackAttemptOut]
    next_attempt_at: dt.datetime | None = Field(
        description="after an unanswered attempt: when the callback takes its place again"
    )
    detail: str = Field(description="the latest outcome in words")
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, record: CallbackRecord) -> CallbackOut:
        return cls(
            id=record.id,
            status=record.status,
            caller=record.caller,
            dialled_number=record.dialled,
            label=record.label,
            group=record.group,
            booked_at=dt.datetime.fromtimestamp(record.booked_at, dt.UTC),
            booked_by_call_id=record.call_id,
            position=record.position,
            max_attempts=record.max_attempts,
            attempts=[
                CallbackAttemptOut(
                    at=dt.datetime.fromtimestamp(attempt.at, dt.UTC),
                    agent_extension=attempt.agent,
                    call_id=attempt.call_id,
                    outcome=attempt.outcome,
                )
                for attempt in record.attempts
            ],
            next_attempt_at=_instant(record.next_attempt_at),
            detail=record.detail,
            finished_at=_instant(record.finished_at),
        )

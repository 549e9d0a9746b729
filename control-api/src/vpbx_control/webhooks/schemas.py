from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..schema_base import StrictInput


class WebhookEvent(enum.StrEnum):
    CALL_RINGING = "call.ringing"
    CALL_ANSWERED = "call.answered"
    CALL_ENDED = "call.ended"
    CALL_MISSED = "call.missed"
    RECORDING_READY = "recording.ready"
    VOICEMAIL_NEW = "voicemail.new"
    CALL_REFUSED = "call.refused"  # a call out the tenant's policy refused (end_reason: the rule)


# Sent by POST /v1/webhooks/{id}/test only; nobody subscribes to it.
PING_EVENT = "ping"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _http_url(value: str) -> str:
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if port == 0:
        raise ValueError("the URL's port must be 1-65535")
    if parts.fragment:
        raise ValueError("the URL may not have a #fragment")
    return value


Url = Annotated[
    str,
    Field(min_length=1, max_length=2048, examples=["https://crm.example.com/hooks/vpbx"]),
    AfterValidator(_http_url),
]
Secret = Annotated[
    str,
    Field(
        min_length=16,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="HMAC key; printable ASCII without spaces, 16-128 characters",
    ),
]
Description = Annotated[str, Field(max_length=200, examples=["CRM call log"])]


def _unique_events(events: list[WebhookEvent]) -> list[WebhookEvent]:
    return list(dict.fromkeys(events))


Events = Annotated[
    list[WebhookEvent],
    Field(min_length=1, max_length=len(WebhookEvent), examples=[["call.answered", "call.ended"]]),
    AfterValidator(_unique_events),
]


class WebhookCreate(StrictInput):
    url: Url
    events: Events
    description: Description | None = None
    active: bool = True
    secret: Secret | None = Field(
        default=None,
        description="leave out to have one generated (32 random bytes, URL-safe base64)",
    )


class WebhookUpdate(StrictInput):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": ["call.missed"], "active": True}]},
    )

    url: Url | None = None
    events: Events | None = None
    description: Description | None = Field(default=None, description="null clears it")
    active: bool | None = None

    @field_validator("url", "events", "active", mode="after")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


class RotateSecret(StrictInput):
    secret: Secret | None = Field(
        default=None,
        description="leave out to have one generated",
        examples=["my-own-secret-of-at-least-16-chars"],
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[WebhookEvent]
    description: str | None
    active: bool
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookWithSecret(WebhookOut):
    """Only in the answer to a create or a secret rotation: the secret is never shown again."""

    secret: str = Field(description="signs every delivery; store it now")


class DeliveryAttempt(BaseModel):
    attempt: int
    at: dt.datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null = no answer")
    error: str | None
    duration_ms: int


class DeliverySummary(BaseModel):
    id: uuid.UUID = Field(description="also sent as X-Vpbx-Delivery and the body's `id`")
    webhook_id: uuid.UUID
    event: str = Field(examples=["call.answered"])
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None = Field(description="when pending: the next try")
    delivered_at: dt.datetime | None
    created_at: dt.datetime


class DeliveryOut(DeliverySummary):
    payload: dict[str, Any] = Field(description="the event data (the body's `data`)")
    history: list[DeliveryAttempt] = Field(description="every attempt, oldest first")

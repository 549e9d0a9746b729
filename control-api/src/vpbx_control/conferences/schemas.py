"""Request and response documents of /v1/conference-rooms. The PIN is written, never read."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, SecretStr

from vpbx_common.nodeconfig import MAX_ROOM_PARTICIPANTS

from ..schema_base import StrictInput
from ..users.schemas import Extension

_PIN = re.compile(r"^[0-9]{4,8}$")


def _pin(value: SecretStr) -> SecretStr:
    if not _PIN.fullmatch(value.get_secret_value()):
        raise ValueError("a PIN is 4 to 8 digits")
    return value


Pin = Annotated[
    SecretStr,
    Field(
        description="4 to 8 digits callers key in (then #) to enter; stored for the media "
        "nodes, never returned",
        examples=["2468"],
    ),
    AfterValidator(_pin),
]
RoomName = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^\S(.*\S)?$", examples=["All hands"])
]
MaxParticipants = Annotated[
    int,
    Field(
        ge=2,
        le=MAX_ROOM_PARTICIPANTS,
        description="callers in the room at once (on one media node); one more hears that "
        "the room is full and gets 486",
    ),
]

EXAMPLE: dict[str, JsonValue] = {
    "extension": "800",
    "name": "All hands",
    "pin": "2468",
    "max_participants": 10,
}


class RoomCreate(StrictInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    extension: Extension = Field(
        description="2-6 digits, not a user's extension nor another room's",
    )
    name: RoomName
    pin: Pin | None = Field(default=None, description="null: no PIN, anyone reaching it enters")
    max_participants: MaxParticipants = 10


class RoomUpdate(StrictInput):
    """Fields left out are not changed; so is the PIN unless given (``pin: null`` removes it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_participants": 20}, {"pin": None}]},
    )

    extension: Extension | None = None
    name: RoomName | None = None
    pin: Pin | None = None
    max_participants: MaxParticipants | None = None


class RoomOut(BaseModel):
    id: uuid.UUID
    extension: str
    name: str
    pin_set: bool = Field(description="whether callers need a PIN (it is never shown)")
    max_participants: int
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

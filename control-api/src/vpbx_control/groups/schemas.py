"""Request and response documents of /v1/groups."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from vpbx_common.manifests import GROUP_NAME
from vpbx_common.pbx import RingStrategy

from ..schema_base import StrictInput
from ..targets import E164, Target

# One enum for the API, the platform file and the node: the strategies the node runs.
Strategy = RingStrategy


# The media node refers to groups by name, and a number's entry made only of
# digits is an extension: a group name starts with a letter (as in PbxConfig).
GroupName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=GROUP_NAME.pattern,
        description="lowercase letters, digits and '-', starting with a letter; "
        "the media node refers to the group by this name",
        examples=["support"],
    ),
]
RingTimeout = Annotated[
    int, Field(ge=5, le=600, description="seconds the group rings before the overflow")
]
MemberRing = Annotated[
    int,
    Field(
        ge=5,
        le=600,
        description="sequential, round-robin, least-recently-called, by-rank: seconds each "
        "member rings before the next one; null = an equal share of ring_timeout_s",
    ),
]
EscalationInterval = Annotated[
    int,
    Field(ge=2, le=120, description="escalating: seconds between adding the next member"),
]
MAX_MEMBERS = 200


class MemberIn(StrictInput):
    """A user of the tenant (``user_id``), or a number outside (``number``): one of them."""

    user_id: uuid.UUID | None = None
    number: E164 | None = Field(
        default=None,
        description="a phone outside (a colleague's mobile, a branch office), rung through the "
        "tenant's trunks under the outbound policy and its caps, showing the caller when the "
        "trunk passes caller IDs; always counted free (only its carrier knows otherwise); "
        "never offered queue callers",
    )
    weight: int = Field(
        default=1, ge=1, le=100, description="share of calls among equals (not yet used)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> MemberIn:
        if (self.user_id is None) == (self.number is None):
            raise ValueError("give either user_id or number")
        return self


class GroupCreate(StrictInput):
    name: GroupName
    strategy: Strategy = Strategy.RING_ALL
    ring_timeout_s: RingTimeout = 30
    escalation_interval_s: EscalationInterval = 10
    member_ring_s: MemberRing | None = None
    overflow: Target | None = Field(
        default=None,
        description="where the call goes when nobody answers; null = hang up",
        examples=[{"type": "voicemail", "user_id": None}],
    )
    members: list[MemberIn] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS,
        description="in ringing order (sequential, escalating); users need an extension",
        examples=[[{"user_id": "5f0c6a52-4a4b-4c39-9a53-2f6f3e1f7a10", "weight": 1}]],
    )


class GroupUpdate(StrictInput):
    """Only the fields given change; ``members``, when given, replaces the whole list."""

    name: GroupName | None = None
    strategy: Strategy | None = None
    ring_timeout_s: RingTimeout | None = None
    escalation_interval_s: EscalationInterval | None = None
    member_ring_s: MemberRing | None = Field(default=None, description="null: an equal share")
    overflow: Target | None = Field(default=None, description="null removes the overflow")
    members: list[MemberIn] | None = Field(default=None, max_length=MAX_MEMBERS)


class MemberOut(BaseModel):
    user_id: uuid.UUID | None = Field(description="null for a number outside")
    number: str | None = Field(default=None, description="the number outside, if it is one")
    extension: str | None
    name: str = Field(description="the user's name, or the number")
    weight: int
    position: int = Field(description="0-based place in the ringing order")


class GroupOut(BaseModel):
    id: uuid.UUID
    name: str
    strategy: Strategy
    ring_timeout_s: int
    escalation_interval_s: int
    member_ring_s: int | None
    overflow: Target | None
    members: list[MemberOut]
    last_member_id: uuid.UUID | None = Field(
        description="round-robin: the member the media nodes rang last (their shared state)"
    )
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

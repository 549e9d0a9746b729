"""Where a call goes, as the media node acts on it.

The control API stores targets by object id (``{"type": "group", "group_id": ...}``);
the compiler resolves each to what the node routes on (an extension, a group or
menu name) and keeps the id for reports. A reference to an object that no longer
exists compiles to ``UnroutedTarget``, never to a guess.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ConfigModel(BaseModel):
    """Base of every node-config document part.

    Immutable. Unknown keys are ignored, so a node keeps reading the documents of
    a newer control API during a rolling upgrade; every field added later has a
    default, so a newer node reads an older document.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class HangupReason(enum.StrEnum):
    """What a caller hears when the plan hangs up: 486, 480 or a plain end."""

    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    NORMAL = "normal"


class UserTarget(ConfigModel):
    type: Literal["user"] = "user"
    extension: str
    user_id: str | None = None


class GroupTarget(ConfigModel):
    type: Literal["group"] = "group"
    name: str
    group_id: str | None = None


class IvrTarget(ConfigModel):
    type: Literal["ivr"] = "ivr"
    name: str
    ivr_menu_id: str | None = None


class RoutePlanTarget(ConfigModel):
    type: Literal["route-plan"] = "route-plan"
    name: str
    route_plan_id: str | None = None


class VoicemailTarget(ConfigModel):
    """A user's voice mailbox; no extension means the tenant's general box."""

    type: Literal["voicemail"] = "voicemail"
    extension: str | None = None
    user_id: str | None = None


class ConferenceTarget(ConfigModel):
    """The tenant's conference room with this extension (a room per node: callers of
    another city's node meet in that node's room)."""

    type: Literal["conference"] = "conference"
    room: str  # the room's extension
    room_id: str | None = None


class ExternalTarget(ConfigModel):
    type: Literal["external"] = "external"
    number: str  # E.164


class HangupTarget(ConfigModel):
    type: Literal["hangup"] = "hangup"
    reason: HangupReason = HangupReason.NORMAL


class UnroutedTarget(ConfigModel):
    """Nowhere: no entry set yet, or the object referred to is gone (``missing`` names it)."""

    type: Literal["unrouted"] = "unrouted"
    missing: str | None = None


Target = Annotated[
    UserTarget
    | GroupTarget
    | IvrTarget
    | RoutePlanTarget
    | VoicemailTarget
    | ConferenceTarget
    | ExternalTarget
    | HangupTarget
    | UnroutedTarget,
    Field(discriminator="type"),
]

UserOrUnrouted = Annotated[UserTarget | UnroutedTarget, Field(discriminator="type")]
GroupOrUnrouted = Annotated[GroupTarget | UnroutedTarget, Field(discriminator="type")]
IvrOrUnrouted = Annotated[IvrTarget | UnroutedTarget, Field(discriminator="type")]
RoutePlanOrUnrouted = Annotated[RoutePlanTarget | UnroutedTarget, Field(discriminator="type")]
VoicemailOrUnrouted = Annotated[VoicemailTarget | UnroutedTarget, Field(discriminator="type")]
ConferenceOrUnrouted = Annotated[ConferenceTarget | UnroutedTarget, Field(discriminator="type")]


def describe(target: Target) -> str:
    """A short text for logs and the call's route: ``group:sales``, ``user:101``, ``unrouted``."""
    match target:
        case UserTarget(extension=name) | GroupTarget(name=name) | IvrTarget(name=name):
            return f"{target.type}:{name}"
        case RoutePlanTarget(name=name):
            return f"{target.type}:{name}"
        case VoicemailTarget(extension=extension):
            return f"voicemail:{extension}" if extension else "voicemail"
        case ConferenceTarget(room=room):
            return f"conference:{room}"
        case ExternalTarget(number=number):
            return f"external:{number}"
        case HangupTarget(reason=reason):
            return f"hangup:{reason}"
        case UnroutedTarget():
            return "unrouted"

"""Where a call can be sent: the target documents shared by groups, IVR menus,
route plans and numbers, and the check that every reference exists in the tenant.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164

from .errors import ReferenceNotFound


def _e164(value: str) -> str:
    try:
        return normalize_e164(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(f"not a phone number: {exc}") from exc


E164 = Annotated[
    str,
    AfterValidator(_e164),
    Field(description="phone number, normalised to E.164", examples=["+74951234567"]),
]


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserTarget(_Target):
    type: Literal["user"] = "user"
    user_id: uuid.UUID


class GroupTarget(_Target):
    type: Literal["group"] = "group"
    group_id: uuid.UUID


class IvrTarget(_Target):
    type: Literal["ivr"] = "ivr"
    ivr_menu_id: uuid.UUID


class RoutePlanTarget(_Target):
    type: Literal["route-plan"] = "route-plan"
    route_plan_id: uuid.UUID


class VoicemailTarget(_Target):
    """A voice mailbox: the caller leaves a message (listed at /v1/voicemails)."""

    type: Literal["voicemail"] = "voicemail"
    user_id: uuid.UUID | None = Field(default=None, description="whose box; null = general box")


class ConferenceTarget(_Target):
    """A conference room (/v1/conference-rooms): the caller joins it."""

    type: Literal["conference"] = "conference"
    room_id: uuid.UUID


class ExternalTarget(_Target):
    """An outside number, called through the tenant's trunks under its outbound policy
    (it rings up to 120 s)."""

    type: Literal["external"] = "external"
    number: E164


class HangupTarget(_Target):
    type: Literal["hangup"] = "hangup"


Target = Annotated[
    UserTarget
    | GroupTarget
    | IvrTarget
    | RoutePlanTarget
    | VoicemailTarget
    | ConferenceTarget
    | ExternalTarget
    | HangupTarget,
    Field(discriminator="type"),
]


async def _exists(session: AsyncSession, model: type, tenant_id: str, row_id: uuid.UUID) -> bool:
    query = select(model.id).where(model.id == row_id, model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    return (await session.execute(query)).first() is not None


async def check_target(
    session: AsyncSession, tenant_id: str, target: Target | None, field: str
) -> None:
    """Raise ReferenceNotFound (404, naming ``field``) unless the target exists in the tenant."""
    # Imported here: the domain packages import this module for the Target types.
    from .conferences.models import ConferenceRoomRow
    from .groups.models import GroupRow
    from .ivr.models import IvrMenuRow
    from .routeplans.models import RoutePlanRow
    from .users.models import UserRow

    model: type[Any]
    match target:
        case UserTarget(user_id=row_id) | VoicemailTarget(user_id=uuid.UUID() as row_id):
            model, label, key = UserRow, "user", "user_id"
        case GroupTarget(group_id=row_id):
            model, label, key = GroupRow, "group", "group_id"
        case IvrTarget(ivr_menu_id=row_id):
            model, label, key = IvrMenuRow, "IVR menu", "ivr_menu_id"
        case RoutePlanTarget(route_plan_id=row_id):
            model, label, key = RoutePlanRow, "route plan", "route_plan_id"
        case ConferenceTarget(room_id=row_id):
            model, label, key = ConferenceRoomRow, "conference room", "room_id"
        case _:
            return
    if not await _exists(session, model, tenant_id, row_id):
        raise ReferenceNotFound(f"{field}.{key}", label)

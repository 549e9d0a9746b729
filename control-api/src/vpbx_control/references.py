"""Who refers to an object: deleting something a route, menu or group still uses is a 409.

Targets are stored as JSON documents (targets.py), so a reference is an id
inside one of them; the documents of one tenant are few enough to scan.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import Conflict, FieldProblem
from .groups.models import GroupRow
from .ivr.models import IvrMenuRow
from .routeplans.models import RoutePlanRow


def _mentions(document: object, needle: str) -> bool:
    return needle in json.dumps(document, default=str)


async def referrers(session: AsyncSession, tenant_id: str, object_id: uuid.UUID) -> list[str]:
    """Human-readable names of the objects whose targets mention ``object_id``."""
    needle = str(object_id)
    found: list[str] = []
    plans = await session.execute(
        select(RoutePlanRow.name, RoutePlanRow.steps).where(RoutePlanRow.tenant_id == tenant_id)
    )
    found += [f"route plan {name!r}" for name, steps in plans if _mentions(steps, needle)]
    menus = await session.execute(
        select(
            IvrMenuRow.name,
            IvrMenuRow.prompt,
            IvrMenuRow.options,
            IvrMenuRow.timeout_target,
            IvrMenuRow.invalid_target,
        ).where(IvrMenuRow.tenant_id == tenant_id)
    )
    found += [f"IVR menu {row[0]!r}" for row in menus if _mentions(row[1:], needle)]
    groups = await session.execute(
        select(GroupRow.name, GroupRow.overflow).where(
            GroupRow.tenant_id == tenant_id, GroupRow.id != object_id
        )
    )
    found += [f"group {name!r}" for name, overflow in groups if _mentions(overflow, needle)]
    return found


async def refuse_if_referenced(
    session: AsyncSession, tenant_id: str, object_id: uuid.UUID, label: str
) -> None:
    users = await referrers(session, tenant_id, object_id)
    if users:
        raise Conflict(
            f"{label} is still used by {', '.join(users)}",
            details=[FieldProblem(field="id", message=f"referenced by {name}") for name in users],
        )

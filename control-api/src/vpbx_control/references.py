"""Who refers to an object: deleting something a route, menu, group or number still uses is a 409.

Targets are stored as JSON documents (targets.py), so a reference is an id
inside one of them; the documents of one tenant are few enough to scan.
Numbers live in the number store, not the database: their ``spec.entry``
holds ``<kind>:<uuid>``; pass ``numbers=context.numbers`` to check them too.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.manifests import Number, entry_reference

from .errors import Conflict, FieldProblem, UsedByNumber
from .groups.models import GroupRow
from .ivr.models import IvrMenuRow
from .numbers.errors import NumberStoreUnavailable
from .numbers.store import NumberStore, NumberStoreError
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
        ).where(IvrMenuRow.tenant_id == tenant_id, IvrMenuRow.id != object_id)
    )
    found += [f"IVR menu {row[0]!r}" for row in menus if _mentions(row[1:], needle)]
    groups = await session.execute(
        select(GroupRow.name, GroupRow.overflow).where(
            GroupRow.tenant_id == tenant_id, GroupRow.id != object_id
        )
    )
    found += [f"group {name!r}" for name, overflow in groups if _mentions(overflow, needle)]
    return found


async def numbers_entering(
    numbers: NumberStore, tenant_id: str, object_id: uuid.UUID | None, *, name: str | None = None
) -> list[Number]:
    """The tenant's numbers whose entry is ``object_id`` (``<kind>:<uuid>``) or, for a
    group, its ``name`` (hand-written manifests name groups), by phone number."""
    try:
        tenant_numbers = await numbers.list_numbers(tenant_id)
    except NumberStoreError as exc:
        raise NumberStoreUnavailable(f"cannot check which numbers use it: {exc}") from exc
    found = []
    for number in tenant_numbers:
        reference = entry_reference(number.spec.entry)
        by_id = object_id is not None and reference is not None and reference[1] == object_id
        if by_id or (name is not None and number.spec.entry == name):
            found.append(number)
    return sorted(found, key=lambda number: number.spec.number)


async def refuse_if_number_entry(
    numbers: NumberStore,
    tenant_id: str,
    object_id: uuid.UUID | None,
    refusal: type[UsedByNumber],
    *,
    name: str | None = None,
    field: str = "id",
) -> None:
    """``refusal`` (a 409) naming the tenant's numbers that enter the object."""
    entering = await numbers_entering(numbers, tenant_id, object_id, name=name)
    if entering:
        raise refusal([number.spec.number for number in entering], field)


async def number_referrers(numbers: NumberStore, tenant_id: str, object_id: uuid.UUID) -> list[str]:
    """The tenant's numbers whose entry route is ``object_id``, named for a 409."""
    return [
        f"number {number.spec.number} ({number.name})"
        for number in await numbers_entering(numbers, tenant_id, object_id)
    ]


async def refuse_if_referenced(
    session: AsyncSession,
    tenant_id: str,
    object_id: uuid.UUID,
    label: str,
    *,
    numbers: NumberStore | None = None,
) -> None:
    """409 naming every referrer; with ``numbers`` also the numbers whose entry it is."""
    users = await referrers(session, tenant_id, object_id)
    if numbers is not None:
        users += await number_referrers(numbers, tenant_id, object_id)
    if users:
        raise Conflict(
            f"{label} is still used by {', '.join(users)}",
            details=[FieldProblem(field="id", message=f"referenced by {name}") for name in users],
        )

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, ClassVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..conferences.models import ConferenceRoomRow
from ..groups.models import GroupRow
from ..ivr.models import IvrMenuRow, PromptRow
from ..repository import NamedRepository
from ..schedules.models import ScheduleRow
from ..tenants.models import TenantRow
from ..users.models import UserRow
from .graph import (
    NodeKind,
    NodeRef,
    RefKind,
    RouteGraph,
    group_edges,
    ivr_menu_edges,
    route_plan_edges,
)
from .models import RoutePlanRow

_MODELS: dict[RefKind, type[Any]] = {
    RefKind.ROUTE_PLAN: RoutePlanRow,
    RefKind.GROUP: GroupRow,
    RefKind.IVR_MENU: IvrMenuRow,
    RefKind.USER: UserRow,
    RefKind.SCHEDULE: ScheduleRow,
    RefKind.PROMPT: PromptRow,
    RefKind.CONFERENCE_ROOM: ConferenceRoomRow,
}


class RoutePlanRepository(NamedRepository[RoutePlanRow]):
    model: ClassVar[type[RoutePlanRow]] = RoutePlanRow
    label: ClassVar[str] = "route plan"

    def filtered(self, name: str | None) -> Select[tuple[RoutePlanRow]]:
        return self.by_name(name)

    async def existing(self, kind: RefKind, ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` name an object of ``kind`` in this tenant."""
        if not ids:
            return set()
        model = _MODELS[kind]
        result = await self.session.execute(
            select(model.id).where(model.tenant_id == self.tenant_id, model.id.in_(ids))
        )
        return set(result.scalars())


async def lock_route_graph(session: AsyncSession, tenant_id: str) -> None:
    """Serialise changes of one tenant's routing graph until the transaction ends.

    Two admins each adding half of a cycle at the same moment would otherwise
    both pass the check. ``FOR NO KEY UPDATE`` does not block inserts of rows
    that refer to the tenant; SQLite, with one writer at a time, renders no lock.
    """
    await session.execute(
        select(TenantRow.id).where(TenantRow.id == tenant_id).with_for_update(key_share=True)
    )


async def load_route_graph(session: AsyncSession, tenant_id: str) -> RouteGraph:
    graph = RouteGraph()
    plans = await session.execute(
        select(RoutePlanRow.id, RoutePlanRow.name, RoutePlanRow.steps).where(
            RoutePlanRow.tenant_id == tenant_id
        )
    )
    for plan_id, name, steps in plans:
        graph.add(NodeRef(NodeKind.ROUTE_PLAN, plan_id), name, route_plan_edges(steps, "steps"))
    groups = await session.execute(
        select(GroupRow.id, GroupRow.name, GroupRow.overflow).where(GroupRow.tenant_id == tenant_id)
    )
    for group_id, name, overflow in groups:
        graph.add(NodeRef(NodeKind.GROUP, group_id), name, group_edges(overflow, "overflow"))
    menus = await session.execute(
        select(
            IvrMenuRow.id,
            IvrMenuRow.name,
            IvrMenuRow.options,
            IvrMenuRow.timeout_target,
            IvrMenuRow.invalid_target,
        ).where(IvrMenuRow.tenant_id == tenant_id)
    )
    for menu_id, name, options, timeout_target, invalid_target in menus:
        graph.add(
            NodeRef(NodeKind.IVR_MENU, menu_id),
            name,
            ivr_menu_edges(options, timeout_target, invalid_target, ""),
        )
    return graph

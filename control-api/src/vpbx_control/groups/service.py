from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.agents import AgentStateStore

from ..auth.principal import Principal
from ..errors import InvalidInput, ReferenceNotFound
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.store import NumberStore
from ..paging import PageParams, check_if_match
from ..references import refuse_if_number_entry, refuse_if_referenced
from ..repository import TenantWork
from ..routeplans.graph import NodeKind, NodeRef, ProposedChange, group_edges
from ..routeplans.service import refuse_cycles
from ..targets import Target, check_target
from .errors import GroupIsNumberEntry, GroupNameTaken, MemberWithoutExtension
from .models import GroupRow
from .repository import GroupRepository
from .schemas import GroupCreate, GroupOut, GroupUpdate, MemberIn, MemberOut, Strategy


def group_out(row: GroupRow, members: list[MemberOut], rung_last: str | None = None) -> GroupOut:
    """``rung_last``: the extension the nodes rang last for this group (round-robin)."""
    last = next((m.user_id for m in members if rung_last and m.extension == rung_last), None)
    return GroupOut.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "strategy": row.strategy,
            "ring_timeout_s": row.ring_timeout_s,
            "escalation_interval_s": row.escalation_interval_s,
            "member_ring_s": row.member_ring_s,
            "overflow": row.overflow,
            "members": members,
            "last_member_id": last,
            "revision": row.revision,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


class GroupService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        numbers: NumberStore,
        agents: AgentStateStore | None = None,
    ) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.repository = GroupRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)
        self.numbers = numbers
        self.agents = agents

    async def page(
        self,
        params: PageParams,
        name: str | None,
        strategy: Strategy | None,
        member_user_id: uuid.UUID | None,
    ) -> tuple[list[tuple[GroupRow, GroupOut]], int]:
        query = self.repository.filtered(name, strategy, member_user_id)
        rows, total = await self.repository.page(query, params)
        members = await self.repository.members_of([row.id for row in rows])
        rung_last = await self._rung_last()
        views = [(row, group_out(row, members[row.id], rung_last.get(row.name))) for row in rows]
        return views, total

    async def get(self, group_id: uuid.UUID) -> tuple[GroupRow, GroupOut]:
        return await self._view(await self.repository.get(group_id))

    async def create(self, body: GroupCreate) -> tuple[GroupRow, GroupOut]:
        if await self.repository.name_taken(body.name):
            raise GroupNameTaken(body.name)
        await self._check_members(body.members)
        overflow = await self._checked_overflow(body.overflow)
        group_id = uuid.uuid4()
        await self._refuse_cycles(group_id, body.name, overflow)
        row = self.repository.add(
            GroupRow(
                id=group_id,
                name=body.name,
                strategy=body.strategy.value,
                ring_timeout_s=body.ring_timeout_s,
                escalation_interval_s=body.escalation_interval_s,
                member_ring_s=body.member_ring_s,
                overflow=overflow,
                last_member_id=None,
                revision=1,
            )
        )
        await self.repository.replace_members(row, body.members)
        await self.work.commit()
        return await self._view(row)

    async def update(
        self, group_id: uuid.UUID, body: GroupUpdate, if_match: str | None
    ) -> tuple[GroupRow, GroupOut]:
        row = await self.repository.get(group_id)
        check_if_match(if_match, row.etag())
        given = body.model_fields_set
        if body.name is not None and body.name != row.name:
            if await self.repository.name_taken(body.name):
                raise GroupNameTaken(body.name)
            # Numbers entering by ``group:<id>`` follow a rename; by name they would not.
            await self._refuse_if_number_entry(row, "body.name", by_id=False)
        if body.members is not None:
            await self._check_members(body.members)
        if "overflow" in given:
            overflow = await self._checked_overflow(body.overflow)
            await self._refuse_cycles(row.id, body.name or row.name, overflow)
            row.overflow = overflow
        # Rows change only now: the cycle check above reads the stored graph.
        if body.name is not None:
            row.name = body.name
        if body.strategy is not None:
            row.strategy = body.strategy.value
        if body.ring_timeout_s is not None:
            row.ring_timeout_s = body.ring_timeout_s
        if body.escalation_interval_s is not None:
            row.escalation_interval_s = body.escalation_interval_s
        if "member_ring_s" in given:
            row.member_ring_s = body.member_ring_s
        if body.members is not None:
            await self.repository.replace_members(row, body.members)
        self.repository.touch(row)
        await self.work.commit()
        return await self._view(row)

    async def delete(self, group_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(group_id)
        check_if_match(if_match, row.etag())
        await refuse_if_referenced(self.session, self.tenant_id, row.id, "group")
        await self._refuse_if_number_entry(row, "id", by_id=True)
        await self.repository.delete(row)
        await self.work.commit()

    async def _view(self, row: GroupRow) -> tuple[GroupRow, GroupOut]:
        members = await self.repository.members_of([row.id])
        rung_last = await self._rung_last()
        return row, group_out(row, members[row.id], rung_last.get(row.name))

    async def _rung_last(self) -> Mapping[str, str]:
        """Group name -> the extension rung last, as the nodes keep it in Redis."""
        if self.agents is None:
            return {}
        try:
            return (await self.agents.snapshot(self.tenant_id)).last_member
        except redis.RedisError:
            return {}  # a detail of the view; the group itself is still shown

    async def _check_members(self, members: Sequence[MemberIn]) -> None:
        seen: set[uuid.UUID] = set()
        numbers: set[str] = set()
        for index, member in enumerate(members):
            if member.number is not None:
                if member.number in numbers:
                    raise InvalidInput.at(
                        f"body.members[{index}].number", "the number is already a member"
                    )
                numbers.add(member.number)
                continue
            assert member.user_id is not None  # MemberIn holds one or the other
            if member.user_id in seen:
                raise InvalidInput.at(
                    f"body.members[{index}].user_id", "the user is already a member"
                )
            seen.add(member.user_id)
        users = await self.repository.users(seen)
        for index, member in enumerate(members):
            if member.user_id is None:
                continue
            field = f"body.members[{index}].user_id"
            user = users.get(member.user_id)
            if user is None:
                raise ReferenceNotFound(field, "user")
            if not user.extension:
                raise MemberWithoutExtension(field)

    async def _checked_overflow(self, overflow: Target | None) -> dict[str, Any] | None:
        await check_target(self.session, self.tenant_id, overflow, "body.overflow")
        return overflow.model_dump(mode="json") if overflow is not None else None

    async def _refuse_cycles(
        self, group_id: uuid.UUID, name: str, overflow: dict[str, Any] | None
    ) -> None:
        change = ProposedChange(
            node=NodeRef(NodeKind.GROUP, group_id), name=name, edges=group_edges(overflow)
        )
        await refuse_cycles(self.session, self.tenant_id, change)

    async def _refuse_if_number_entry(self, row: GroupRow, field: str, *, by_id: bool) -> None:
        """Numbers enter a group by its name or, written ``group:<id>``, by its id."""
        await refuse_if_number_entry(
            self.numbers,
            self.tenant_id,
            row.id if by_id else None,
            GroupIsNumberEntry,
            name=row.name,
            field=field,
        )

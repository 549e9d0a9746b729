from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import ClassVar

from sqlalchemy import Select, delete, select

from ..repository import NamedRepository
from ..users.models import UserRow
from .models import GroupMemberRow, GroupRow
from .schemas import MemberIn, MemberOut, Strategy


class GroupRepository(NamedRepository[GroupRow]):
    model: ClassVar[type[GroupRow]] = GroupRow
    label: ClassVar[str] = "group"

    def filtered(
        self, name: str | None, strategy: Strategy | None, member_user_id: uuid.UUID | None
    ) -> Select[tuple[GroupRow]]:
        query = self.by_name(name)
        if strategy is not None:
            query = query.where(GroupRow.strategy == strategy.value)
        if member_user_id is not None:
            query = query.where(
                GroupRow.id.in_(
                    select(GroupMemberRow.group_id).where(GroupMemberRow.user_id == member_user_id)
                )
            )
        return query

    async def users(self, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, UserRow]:
        """The tenant's users among ``user_ids``; those of other tenants are left out."""
        if not user_ids:
            return {}
        result = await self.session.execute(
            select(UserRow).where(UserRow.tenant_id == self.tenant_id, UserRow.id.in_(user_ids))
        )
        return {user.id: user for user in result.scalars()}

    async def members_of(self, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[MemberOut]]:
        """The members of the tenant's groups ``group_ids``, in ringing order."""
        members: dict[uuid.UUID, list[MemberOut]] = {group_id: [] for group_id in group_ids}
        if not group_ids:
            return members
        # The groups are the tenant's (the caller checked): their number members have no
        # user row, and a user member's row is the tenant's by the same token.
        result = await self.session.execute(
            select(GroupMemberRow, UserRow.extension, UserRow.name)
            .outerjoin(UserRow, UserRow.id == GroupMemberRow.user_id)
            .where(GroupMemberRow.group_id.in_(group_ids))
            .order_by(GroupMemberRow.group_id, GroupMemberRow.position)
        )
        for member, extension, name in result:
            members[member.group_id].append(
                MemberOut(
                    user_id=member.user_id,
                    number=member.number,
                    extension=extension,
                    name=name if member.user_id is not None else member.number or "",
                    weight=member.weight,
                    position=member.position,
                )
            )
        return members

    async def replace_members(self, group: GroupRow, members: Sequence[MemberIn]) -> None:
        await self.session.execute(
            delete(GroupMemberRow).where(GroupMemberRow.group_id == group.id)
        )
        self.session.add_all(
            GroupMemberRow(
                id=uuid.uuid4(),
                group_id=group.id,
                user_id=member.user_id,
                number=member.number,
                position=position,
                weight=member.weight,
            )
            for position, member in enumerate(members)
        )

"""Queries of users and devices, scoped to one tenant (the e-mail check is global by design)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import ClassVar

from sqlalchemy import Select, func, or_, select

from vpbx_common.pbx import Presence

from ..auth.principal import Role
from ..errors import NotFound
from ..repository import TenantRepository
from ..tenants.models import TenantRow
from .models import DeviceRow, UserRow


class UserRepository(TenantRepository[UserRow]):
    model: ClassVar[type[UserRow]] = UserRow
    label: ClassVar[str] = "user"

    async def tenant(self, *, for_update: bool = False) -> TenantRow:
        """The caller's tenant; ``for_update`` serialises seat checks of concurrent writers."""
        query = select(TenantRow).where(TenantRow.id == self.tenant_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound("tenant not found")
        return row

    def filtered(
        self,
        *,
        role: Role | None = None,
        city: str | None = None,
        extension: str | None = None,
        presence: Presence | None = None,
        q: str | None = None,
    ) -> Select[tuple[UserRow]]:
        # Extensions in numeric order (20 before 100), users without one last.
        query = self.scoped().order_by(
            UserRow.extension.is_(None),
            func.length(UserRow.extension),
            UserRow.extension,
            UserRow.name,
            UserRow.id,
        )
        if role is not None:
            query = query.where(UserRow.role == role)
        if city is not None:
            query = query.where(UserRow.city == city)
        if extension is not None:
            query = query.where(UserRow.extension == extension)
        if presence is not None:
            query = query.where(UserRow.presence == presence)
        if q:
            needle = q.lower()
            query = query.where(
                or_(
                    func.lower(UserRow.name).contains(needle, autoescape=True),
                    func.lower(UserRow.email).contains(needle, autoescape=True),
                )
            )
        return query

    async def email_in_use(self, email: str, *, other_than: uuid.UUID | None = None) -> bool:
        """E-mails are logins across the whole platform, so this looks at every tenant."""
        query = select(UserRow.id).where(func.lower(UserRow.email) == email.lower())
        if other_than is not None:
            query = query.where(UserRow.id != other_than)
        return (await self.session.execute(query)).first() is not None

    async def extension_owner(self, extension: str) -> uuid.UUID | None:
        query = self.scoped().where(UserRow.extension == extension).with_only_columns(UserRow.id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def ids_by_extension(self, extensions: Collection[str]) -> dict[str, uuid.UUID]:
        """extension -> user id, for those of ``extensions`` a user of the tenant has."""
        if not extensions:
            return {}
        query = (
            self.scoped()
            .where(UserRow.extension.in_(extensions))
            .with_only_columns(UserRow.extension, UserRow.id)
        )
        return {
            extension: user_id
            for extension, user_id in await self.session.execute(query)
            if extension is not None
        }

    async def seats_used(self) -> int:
        query = select(func.count()).where(
            UserRow.tenant_id == self.tenant_id, UserRow.extension.is_not(None)
        )
        return int(await self.session.scalar(query) or 0)

    async def admins(self) -> int:
        query = select(func.count()).where(
            UserRow.tenant_id == self.tenant_id, UserRow.role == Role.TENANT_ADMIN
        )
        return int(await self.session.scalar(query) or 0)


class DeviceRepository(TenantRepository[DeviceRow]):
    model: ClassVar[type[DeviceRow]] = DeviceRow
    label: ClassVar[str] = "device"

    def of_user(self, user_id: uuid.UUID) -> Select[tuple[DeviceRow]]:
        return (
            self.scoped()
            .where(DeviceRow.user_id == user_id)
            .order_by(DeviceRow.created_at, DeviceRow.id)
        )

    async def get_of_user(self, user_id: uuid.UUID, device_id: uuid.UUID) -> DeviceRow:
        row = await self.find(device_id)
        if row is None or row.user_id != user_id:
            raise NotFound("device not found")
        return row

    async def of_kind(self, user_id: uuid.UUID, kind: str) -> list[DeviceRow]:
        """The user's devices of one kind, oldest first."""
        query = (
            select(DeviceRow)
            .where(
                DeviceRow.tenant_id == self.tenant_id,
                DeviceRow.user_id == user_id,
                DeviceRow.kind == kind,
            )
            .order_by(DeviceRow.created_at, DeviceRow.id)
        )
        return list((await self.session.scalars(query)).all())

    async def count_of_user(self, user_id: uuid.UUID) -> int:
        query = select(func.count()).where(
            DeviceRow.tenant_id == self.tenant_id, DeviceRow.user_id == user_id
        )
        return int(await self.session.scalar(query) or 0)

    async def usernames_like(self, base: str) -> set[str]:
        """Usernames equal to ``base`` or starting with ``base-``."""
        query = select(DeviceRow.username).where(
            DeviceRow.tenant_id == self.tenant_id,
            or_(
                DeviceRow.username == base,
                DeviceRow.username.startswith(f"{base}-", autoescape=True),
            ),
        )
        return set((await self.session.execute(query)).scalars().all())

    async def username_taken(self, username: str) -> bool:
        query = select(DeviceRow.id).where(
            DeviceRow.tenant_id == self.tenant_id, DeviceRow.username == username
        )
        return (await self.session.execute(query)).first() is not None

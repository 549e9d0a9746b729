"""Reads one tenant's PBX from the database and the number store and compiles it."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.manifests import Trunk
from vpbx_common.nodeconfig import NodeConfig

from ..conferences.models import ConferenceRoomRow
from ..decisions.repository import DecisionSecretRepository
from ..errors import NotFound, Unavailable
from ..groups.models import GroupMemberRow, GroupRow
from ..ivr.models import IvrMenuRow, PromptRow
from ..numbers.models import NumberGreetingRow
from ..numbers.store import NumberStore, NumberStoreError
from ..routeplans.models import RoutePlanRow
from ..schedules.models import ScheduleRow
from ..tenants.models import TenantRow
from ..trunks.models import TrunkRow
from ..users.models import DeviceRow, UserRow
from .compile import TenantSnapshot, compile_tenant_config

logger = logging.getLogger(__name__)

RowT = TypeVar("RowT")

DEFAULT_LANGUAGE = "ru-RU"


class NodeConfigNotFound(NotFound):
    error_id = "node-config-not-found"


class NodeConfigService:
    def __init__(
        self, session: AsyncSession, numbers: NumberStore, platform_trunks: Sequence[Trunk] = ()
    ) -> None:
        self.session = session
        self.numbers = numbers
        self.platform_trunks = platform_trunks

    async def _tenant_rows(self, model: type[RowT], tenant_id: str) -> Sequence[RowT]:
        owned: Any = model
        result = await self.session.execute(select(owned).where(owned.tenant_id == tenant_id))
        rows: Sequence[RowT] = result.scalars().all()
        return rows

    async def snapshot(self, tenant: TenantRow) -> TenantSnapshot:
        groups = await self._tenant_rows(GroupRow, tenant.id)
        members: Sequence[GroupMemberRow] = ()
        if groups:
            result = await self.session.execute(
                select(GroupMemberRow).where(GroupMemberRow.group_id.in_([g.id for g in groups]))
            )
            members = result.scalars().all()
        try:
            numbers = await self.numbers.list_numbers(tenant.id)
        except NumberStoreError as exc:
            logger.warning("tenant=%s numbers unreadable: %s", tenant.id, exc)
            raise Unavailable("the number store cannot be read; try again") from exc
        decision_secret = await DecisionSecretRepository(self.session, tenant.id).find()
        greetings = await self._tenant_rows(NumberGreetingRow, tenant.id)
        return TenantSnapshot(
            tenant=tenant,
            users=await self._tenant_rows(UserRow, tenant.id),
            devices=await self._tenant_rows(DeviceRow, tenant.id),
            groups=groups,
            members=members,
            schedules=await self._tenant_rows(ScheduleRow, tenant.id),
            ivr_menus=await self._tenant_rows(IvrMenuRow, tenant.id),
            route_plans=await self._tenant_rows(RoutePlanRow, tenant.id),
            numbers=numbers,
            decision_secret=decision_secret.secret if decision_secret is not None else None,
            number_greetings={row.number: row.greeting for row in greetings},
            language=await self._language(tenant.id),
            trunks=await self._tenant_rows(TrunkRow, tenant.id),
            platform_trunks=self.platform_trunks,
            conference_rooms=await self._tenant_rows(ConferenceRoomRow, tenant.id),
        )

    async def _language(self, tenant_id: str) -> str:
        """The tenant's language, for the platform's own phrases: the one its spoken
        prompts (IVR menus, greetings) use most; Russian for a tenant with none. Tenants
        set no language of their own (yet): what they have the platform say is the
        best evidence of what their callers speak."""
        languages = await self.session.scalars(
            select(PromptRow.language).where(
                PromptRow.tenant_id == tenant_id, PromptRow.language.is_not(None)
            )
        )
        counted = Counter(language for language in languages if language)
        if not counted:
            return DEFAULT_LANGUAGE
        # Most used first; a tie goes to the tag sorting first, so the config is stable.
        return min(counted, key=lambda language: (-counted[language], language))

    async def compile(self, tenant_id: str, city: str) -> NodeConfig:
        tenant = await self.session.get(TenantRow, tenant_id)
        if tenant is None or city not in (tenant.cities or ()):
            raise NodeConfigNotFound(f"tenant {tenant_id!r} has no node in city {city!r}")
        return compile_tenant_config(await self.snapshot(tenant), city)

"""The tenant's home directory: which city's node each SIP username registers with.

A user works in one city; their phones should register with that city's node so
their calls' media stays close to them. The SIP edge sees only the username in
a REGISTER (an extension or a device username), so the control API publishes
username -> city for every user and device (``vpbx:route:home:<tenant>``).

Rewritten under a per-tenant lock and by a periodic pass (rewriter.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..users.models import DeviceRow, UserRow
from .rewriter import TenantEntryRewriter


async def load_homes(session: AsyncSession, tenant_id: str) -> dict[str, str]:
    users = await session.execute(
        select(UserRow.id, UserRow.extension, UserRow.city).where(
            UserRow.tenant_id == tenant_id, UserRow.city.is_not(None)
        )
    )
    city_of: dict[object, str] = {}
    homes: dict[str, str] = {}
    for user_id, extension, city in users.all():
        if city is None:  # filtered out by the query; narrows the type
            continue
        city_of[user_id] = city
        if extension:
            homes[extension] = city
    devices = await session.execute(
        select(DeviceRow.username, DeviceRow.user_id).where(DeviceRow.tenant_id == tenant_id)
    )
    for username, user_id in devices.all():
        if user_id in city_of:
            homes[username] = city_of[user_id]
    return homes


class HomeDirectory(TenantEntryRewriter):
    entry = "home directory"
    meanwhile = "phones may register in another city until the next pass"

    def _lock_key(self, tenant_id: str) -> str:
        return f"{self._table.home_key(tenant_id)}:lock"

    async def _read(self, tenant_id: str) -> dict[str, str]:
        async with self._database.session() as session:
            return await load_homes(session, tenant_id)

    def _write(self, pipe: Any, tenant_id: str, value: Any) -> None:
        self._table.replace_homes(pipe, tenant_id, value)

"""The tenant's home directory: which city's node each SIP username registers with.

A user works in one city; their phones should register with that city's node so
their calls' media stays close to them. The SIP edge sees only the username in
a REGISTER (an extension or a device username), so the control API publishes
username -> city for every user and device after each change.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.session import Database
from ..tenants.models import TenantRow
from ..users.models import DeviceRow, UserRow
from .publisher import ConfigPublisher


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


async def restore_all_homes(database: Database, publisher: ConfigPublisher) -> int:
    """Write every tenant's home directory; run at start, as Redis may have lost them."""
    async with database.session() as session:
        tenants = (await session.execute(select(TenantRow.id))).scalars().all()
        for tenant_id in tenants:
            await publisher.restore_homes(tenant_id, await load_homes(session, tenant_id))
    return len(tenants)

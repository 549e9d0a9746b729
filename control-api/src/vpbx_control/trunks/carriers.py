"""Where a tenant's own trunks call from, in the edge routing table.

The SIP edge takes a call to one of the tenant's numbers only from a carrier: the
platform's (written by the operator or `vpbx up`) or one of the tenant's own trunks
(``vpbx:route:carriers:<tenant>``, vpbx_common.routing), which this module writes.
A trunk's networks are its ``allowed_addresses``, else the addresses its host
resolves to (vpbx_common.carriers).

When: with every committed change of a tenant's trunks (``TenantWork.commit(carriers=
True)``, announced with the config change by nodeconfig.publisher), when a tenant is
created or deleted, and on a periodic pass over every tenant by every replica. The
pass heals a write that failed or a Redis that lost its data, removes the entries of
tenants that no longer exist, and resolves host names again: a carrier whose DNS
answer changed is known to the edge again within one pass
(``VPBX_CARRIER_NETWORKS_REWRITE_S``). A trunk with ``allowed_addresses`` never
depends on DNS.

Rewritten under a per-tenant lock and by a periodic pass, as the home directory is
(nodeconfig/rewriter.py).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.carriers import networks_of

from ..nodeconfig.rewriter import TenantEntryRewriter
from ..tenants.models import TenantRow
from .models import TrunkRow

logger = logging.getLogger(__name__)


async def load_trunk_addresses(
    session: AsyncSession, tenant_id: str
) -> list[tuple[str, list[str]]]:
    """The tenant's trunks as (URI, allowed addresses)."""
    rows = await session.execute(
        select(TrunkRow.uri, TrunkRow.allowed_addresses).where(TrunkRow.tenant_id == tenant_id)
    )
    return [(uri, [str(cidr) for cidr in allowed or ()]) for uri, allowed in rows.all()]


class TenantCarriers(TenantEntryRewriter):
    entry = "carrier networks"
    meanwhile = "the edge goes by the old entry until the next pass"

    def _lock_key(self, tenant_id: str) -> str:
        # Not under the entries' own prefix: the pass scans that for stale entries.
        return f"vpbx:lock:carriers:{tenant_id}"

    async def _read(self, tenant_id: str) -> Any:
        async with self._database.session() as session:
            trunks = await load_trunk_addresses(session, tenant_id)
        return await networks_of(trunks)

    def _write(self, pipe: Any, tenant_id: str, value: Any) -> None:
        self._table.replace_tenant_carriers(pipe, tenant_id, value)

    async def _after_pass(self, tenants: set[str]) -> None:
        await self._forget_gone(tenants)

    async def _forget_gone(self, tenants: set[str]) -> None:
        """Delete the entries of tenants that no longer exist."""
        prefix = self._table.tenant_carriers_key("")
        try:
            entries = {
                text[len(prefix) :]
                async for key in self._redis.scan_iter(match=f"{prefix}*", count=500)
                if (text := key.decode() if isinstance(key, bytes) else str(key))
            }
            gone = entries - tenants
            if gone:
                # Asked again: a tenant created since the list was read keeps its entry.
                async with self._database.session() as session:
                    found = await session.execute(
                        select(TenantRow.id).where(TenantRow.id.in_(sorted(gone)))
                    )
                    gone -= set(found.scalars().all())
            if gone:
                await self._redis.delete(*(prefix + tenant for tenant in sorted(gone)))
                logger.info("carrier networks of %d deleted tenant(s) removed", len(gone))
        except (RedisError, SQLAlchemyError) as exc:
            logger.warning("stale carrier networks not removed: %s", exc)

"""The tenant's decision secret: HTTP decisions are signed with it like webhook deliveries.

A media node signs each decision request (``X-Vpbx-Signature``, vpbx_common.signing)
with the tenant's decision secret, which it reads from its node config. The
secret is made the first time a route plan gets an HTTP-decision step (so a
plan can always be signed) and replaced by a rotation; only a rotation's answer
shows it. A rotation is a config change: the nodes reload and sign with the new
secret from their next decision on.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.signing import generate_secret

from ..auth.principal import Principal
from ..db.base import utcnow
from ..nodeconfig.publisher import ConfigPublisher
from ..repository import TenantWork
from .models import DecisionSecretRow
from .repository import DecisionSecretRepository

logger = logging.getLogger(__name__)


async def ensure_decision_secret(session: AsyncSession, tenant_id: str) -> bool:
    """Make the tenant's decision secret unless it has one; whether one was made.

    For a change that adds an HTTP-decision step: call it inside that change's
    transaction, which commits (and announces) it with the rest.
    """
    repository = DecisionSecretRepository(session, tenant_id)
    await repository.lock()
    if await repository.find() is not None:
        return False
    await repository.put(generate_secret(), utcnow())
    logger.info("tenant=%s decision secret created for its first HTTP decision", tenant_id)
    return True


class DecisionSecretService:
    def __init__(
        self, session: AsyncSession, principal: Principal, publisher: ConfigPublisher
    ) -> None:
        self.tenant_id = principal.tenant
        self.repository = DecisionSecretRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)

    async def current(self) -> DecisionSecretRow | None:
        return await self.repository.find()

    async def rotate(self) -> DecisionSecretRow:
        """A new secret (the first one, or a replacement); the nodes reload."""
        await self.repository.lock()
        row = await self.repository.put(generate_secret(), utcnow())
        await self.work.commit()
        logger.info("tenant=%s decision secret rotated", self.tenant_id)
        return row

"""Tenant API keys: created with a random secret shown once, revoked, never deleted.

Keys are credentials, not node config: their changes commit with
``affects_nodes=False`` and do not make the media nodes reload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.credentials import ApiKeySecret
from ..auth.principal import Principal
from ..db.base import utcnow
from ..nodeconfig.publisher import ConfigPublisher
from ..paging import PageParams, check_if_match
from ..repository import TenantWork
from .models import ApiKeyRow
from .repository import ApiKeyRepository
from .schemas import ApiKeyCreate


@dataclass(frozen=True)
class IssuedKey:
    row: ApiKeyRow
    key: str  # the full bearer value; exists only in this response


class ApiKeyService:
    def __init__(
        self, session: AsyncSession, principal: Principal, publisher: ConfigPublisher
    ) -> None:
        self.principal = principal
        self.repository = ApiKeyRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)

    async def list(
        self, params: PageParams, *, name: str | None, revoked: bool | None
    ) -> tuple[list[ApiKeyRow], int]:
        return await self.repository.page(
            self.repository.filtered(name=name, revoked=revoked), params
        )

    async def get(self, key_id: uuid.UUID) -> ApiKeyRow:
        return await self.repository.get(key_id)

    async def create(self, body: ApiKeyCreate) -> IssuedKey:
        secret = ApiKeySecret.generate()
        row = self.repository.add(
            ApiKeyRow(
                id=secret.key_id,
                name=body.name,
                role=body.role,
                secret_sha256=secret.secret_sha256(),
                created_by=self.principal.user_id,
                revision=1,
            )
        )
        await self.work.commit(affects_nodes=False)
        return IssuedKey(row, str(secret))

    async def revoke(self, key_id: uuid.UUID, if_match: str | None) -> None:
        """Idempotent: revoking a revoked key changes nothing."""
        row = await self.repository.get(key_id)
        check_if_match(if_match, row.etag())
        if row.revoked_at is not None:
            return
        row.revoked_at = utcnow()
        self.repository.touch(row)
        await self.work.commit(affects_nodes=False)

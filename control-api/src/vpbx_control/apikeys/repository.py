from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Select, func

from ..repository import TenantRepository
from .models import ApiKeyRow


class ApiKeyRepository(TenantRepository[ApiKeyRow]):
    model: ClassVar[type[ApiKeyRow]] = ApiKeyRow
    label: ClassVar[str] = "API key"

    def filtered(self, *, name: str | None, revoked: bool | None) -> Select[tuple[ApiKeyRow]]:
        query = self.scoped().order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if name:
            query = query.where(func.lower(ApiKeyRow.name).contains(name.lower(), autoescape=True))
        if revoked is True:
            query = query.where(ApiKeyRow.revoked_at.is_not(None))
        elif revoked is False:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        return query

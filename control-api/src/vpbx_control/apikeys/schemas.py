"""Request and response documents of /v1/api-keys. The secret appears only in ApiKeyCreated."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

from ..auth.credentials import API_KEY_PREFIX
from ..auth.principal import Role
from .models import ApiKeyRow

PREFIX_HEX_CHARS = 8


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "CRM integration", "role": "tenant-admin"}]},
    )

    name: str = Field(
        min_length=1, max_length=100, pattern=r"^\S(.*\S)?$", examples=["CRM integration"]
    )
    role: Role = Field(default=Role.TENANT_ADMIN, description="the key acts with this role")


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    prefix: str = Field(
        description="how the key starts, to recognise it; not a secret", examples=["vpbx_3f9a0c1e"]
    )
    created_by: uuid.UUID | None = Field(description="the user who created it, if any")
    created_at: dt.datetime
    last_used_at: dt.datetime | None = Field(description="within about a minute")
    revoked: bool
    revoked_at: dt.datetime | None
    revision: int

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKeyOut:
        return cls(
            id=row.id,
            name=row.name,
            role=row.role,
            prefix=API_KEY_PREFIX + row.id.hex[:PREFIX_HEX_CHARS],
            created_by=row.created_by,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked=row.revoked_at is not None,
            revoked_at=row.revoked_at,
            revision=row.revision,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="the full key for `Authorization: Bearer`; shown only in this response",
        examples=["vpbx_3f9a0c1e5b7d4e2f8a6c1b3d5e7f9a0c_Xq..."],
    )

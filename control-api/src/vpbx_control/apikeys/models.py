"""Tenant API keys: ``vpbx_<key id>_<secret>``; only a hash of the secret is kept."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Enum, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..auth.principal import Role
from ..db.base import Base, TenantOwned, enum_values


class ApiKeyRow(TenantOwned, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="api_key_role", values_callable=enum_values, native_enum=False, length=32)
    )
    # SHA-256 of the random secret part: a 256-bit random secret needs no slow hash.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)

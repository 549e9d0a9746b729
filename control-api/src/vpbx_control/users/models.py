"""Users (people: login, role, extension, routing attributes) and their SIP devices."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Enum, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_common.pbx import Presence

from ..auth.principal import Role
from ..db.base import Base, TenantOwned, enum_values


class UserRow(TenantOwned, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "extension"),)

    # Login is by e-mail across the platform, so e-mails are globally unique.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="user_role", values_callable=enum_values, native_enum=False, length=32)
    )
    extension: Mapped[str | None] = mapped_column(String(16), default=None)
    city: Mapped[str | None] = mapped_column(String(63), default=None)
    mobile: Mapped[str | None] = mapped_column(String(20), default=None)  # E.164
    rank: Mapped[int] = mapped_column(Integer, default=0)  # qualification, higher rings first
    skills: Mapped[list[Any]] = mapped_column(default=list)
    presence: Mapped[Presence] = mapped_column(
        Enum(Presence, name="presence", values_callable=enum_values, native_enum=False, length=32),
        default=Presence.AVAILABLE,
    )
    # Personal settings the user may change: forward to mobile after N seconds, etc.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Bumped on password or role change: outstanding access tokens stop working.
    token_generation: Mapped[int] = mapped_column(Integer, default=1)


class DeviceRow(TenantOwned, Base):
    """A SIP device (desk phone, softphone, mobile app) of one user.

    The password is generated, shown once and kept only as digest HA1 values
    (realm = the tenant's SIP domain).
    """

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    username: Mapped[str] = mapped_column(String(64))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    # "phone" (added by a tenant admin) or "browser" (the agent workspace's softphone, which
    # users add themselves, a few at most: see UserService.add_browser_device).
    kind: Mapped[str] = mapped_column(String(16), default="phone", server_default="phone")

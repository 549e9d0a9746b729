"""A tenant's own carrier trunk ("bring your own carrier")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class TrunkRow(TenantOwned, Base):
    __tablename__ = "trunks"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    uri: Mapped[str] = mapped_column(String(300))  # sip:HOST:PORT;transport=udp|tcp, normalised
    registers: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str | None] = mapped_column(String(128), default=None)
    # Needed in clear: the media nodes answer the carrier's digest challenges with it, and
    # the realm an HA1 would need is only known from the challenge. Never returned.
    password: Mapped[str | None] = mapped_column(String(256), default=None)
    allowed_addresses: Mapped[list[Any]] = mapped_column(default=list)  # CIDRs, normalised
    priority: Mapped[int] = mapped_column(Integer, default=100)
    passes_caller_id: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:  # never the password, even in a debugger or a log line
        return f"TrunkRow(id={self.id!s}, tenant_id={self.tenant_id!r}, name={self.name!r})"

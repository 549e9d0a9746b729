"""Conference rooms: an extension of the tenant's plan, a PIN, a size."""

from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class ConferenceRoomRow(TenantOwned, Base):
    __tablename__ = "conference_rooms"
    __table_args__ = (UniqueConstraint("tenant_id", "extension"),)

    extension: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(63))
    # In clear: the media nodes compare what callers key in (4-8 digits; a hash of so
    # few digits would protect nothing). Write-only in the API (``pin_set``).
    pin: Mapped[str | None] = mapped_column(String(8), default=None)
    max_participants: Mapped[int] = mapped_column(Integer, default=10)

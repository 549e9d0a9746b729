"""Working-hours schedules: a time zone, weekly intervals, holidays and special days."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class ScheduleRow(TenantOwned, Base):
    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    time_zone: Mapped[str] = mapped_column(String(64))
    weekly: Mapped[list[Any]] = mapped_column(default=list)  # [{day, start, end}]
    special_days: Mapped[list[Any]] = mapped_column(default=list)  # [{date, name, hours}]

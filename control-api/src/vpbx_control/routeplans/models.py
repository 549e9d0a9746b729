"""Route plans: the ordered chain of steps a call to a number goes through."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class RoutePlanRow(TenantOwned, Base):
    __tablename__ = "route_plans"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    steps: Mapped[list[Any]] = mapped_column(default=list)  # routeplans.schemas.Step documents

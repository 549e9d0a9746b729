"""The platform's number pool. A tenant's numbers themselves are Number custom resources."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, utcnow


class PoolNumberRow(Base):
    __tablename__ = "pool_numbers"

    number: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    city: Mapped[str] = mapped_column(String(63), index=True)
    # null while available; the owning tenant once provisioned
    tenant_id: Mapped[str | None] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp()
    )

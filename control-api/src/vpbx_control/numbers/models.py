"""The platform's number pool. A tenant's numbers themselves are Number custom resources."""

from __future__ import annotations

import datetime as dt
from typing import Any

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


class NumberGreetingRow(Base):
    """What callers of one of the tenant's numbers hear before routing (migration 0009).

    Kept here rather than on the Number resource: it is tenant PBX config (a prompt,
    maybe this tenant's stored audio), not something the platform routes by.
    """

    __tablename__ = "number_greetings"

    tenant_id: Mapped[str] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    # A stored prompt document, as an IVR menu's: {"kind": "audio", "prompt_id"} (an
    # upload, or speech rendered when saved) or {"kind": "tone", ...}.
    greeting: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )

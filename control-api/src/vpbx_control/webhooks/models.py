"""Webhook subscriptions and the log of every delivery attempt."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class WebhookRow(TenantOwned, Base):
    __tablename__ = "webhooks"

    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]] = mapped_column(default=list)
    # Needed in clear to sign deliveries; never returned after creation.
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(String(200), default=None)


class WebhookDeliveryRow(TenantOwned, Base):
    __tablename__ = "webhook_deliveries"
    # One delivery per webhook and source event (migration 0005).
    __table_args__ = (UniqueConstraint("webhook_id", "dedupe_key"),)

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # One entry per attempt: {"attempt", "at", "status_code", "error", "duration_ms"}
    # (migration 0004).
    history: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    # What the delivery stands for, when it comes from something that may be seen twice
    # (a call event read again from the stream): sha256 hex of (call id, event). NULL
    # for deliveries that cannot repeat (test pings).
    dedupe_key: Mapped[str | None] = mapped_column(String(64), default=None)

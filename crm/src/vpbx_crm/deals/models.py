"""Pipelines with their stages, deals moving through them, and each deal's history."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, Numeric, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_control.db.base import enum_values, utcnow

from ..db.base import Base, Searchable, TenantRow


class StageKind(enum.StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealEventKind(enum.StrEnum):
    CREATED = "created"
    MOVED = "moved"
    WON = "won"
    LOST = "lost"
    REOPENED = "reopened"


class PipelineRow(TenantRow, Base):
    __tablename__ = "crm_pipelines"

    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)


class StageRow(TenantRow, Base):
    __tablename__ = "crm_stages"

    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_pipelines.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[StageKind] = mapped_column(
        Enum(StageKind, name="crm_stage_kind", values_callable=enum_values, native_enum=False),
        default=StageKind.OPEN,
    )


class DealRow(Searchable, TenantRow, Base):
    __searchable__ = "title"
    __tablename__ = "crm_deals"
    __table_args__ = (Index("ix_crm_deals_tenant_stage", "tenant_id", "stage_id"),)

    title: Mapped[str] = mapped_column(String(200))
    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_pipelines.id", ondelete="RESTRICT"), index=True
    )
    stage_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_stages.id", ondelete="RESTRICT")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="SET NULL"), default=None, index=True
    )
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_companies.id", ondelete="SET NULL"), default=None, index=True
    )
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), default=None)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    loss_reason: Mapped[str] = mapped_column(String(200), default="")
    source_label: Mapped[str] = mapped_column(String(63), default="")
    closed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DealEventRow(Base):
    """One step of a deal's history (the funnel's raw data)."""

    __tablename__ = "crm_deal_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    deal_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_deals.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[DealEventKind] = mapped_column(
        Enum(
            DealEventKind,
            name="crm_deal_event_kind",
            values_callable=enum_values,
            native_enum=False,
        )
    )
    from_stage_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    to_stage_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

"""Companies: the organisations contacts work for."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, Searchable, TenantRow


class CompanyRow(Searchable, TenantRow, Base):
    __tablename__ = "crm_companies"
    __table_args__ = (Index("ix_crm_companies_tenant_name", "tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    phones: Mapped[list[Any]] = mapped_column(default=list)  # E.164
    emails: Mapped[list[Any]] = mapped_column(default=list)
    website: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    tax_id: Mapped[str] = mapped_column(String(20), default="")  # ИНН
    category: Mapped[str] = mapped_column(String(40), default="client")
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)

"""Contacts (people who call or are called) and their phones."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, Searchable, TenantRow


class ContactRow(Searchable, TenantRow, Base):
    __tablename__ = "crm_contacts"
    __table_args__ = (
        Index("ix_crm_contacts_tenant_name", "tenant_id", "name"),
        Index("ix_crm_contacts_tenant_owner", "tenant_id", "owner_user_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    emails: Mapped[list[Any]] = mapped_column(default=list)
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_companies.id", ondelete="SET NULL"), default=None, index=True
    )
    category: Mapped[str] = mapped_column(String(40), default="client")
    # Derived from the first phone (vpbx_common.phoneregion): "RU-NVS", "DE:Berlin", "".
    region: Mapped[str] = mapped_column(String(100), default="")
    region_name: Mapped[str] = mapped_column(String(200), default="")
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    # The ad-channel label of the number they first called ('' if none or unknown).
    source_label: Mapped[str] = mapped_column(String(63), default="")
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)


class ContactPhoneRow(Base):
    """One phone of a contact; a phone belongs to at most one contact of the tenant.

    The primary key is the routing lookup's index: (tenant, E.164 phone) -> contact.
    """

    __tablename__ = "crm_contact_phones"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)

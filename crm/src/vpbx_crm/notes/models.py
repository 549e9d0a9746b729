"""Notes on a contact, a company or a deal."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantRow


class NoteRow(TenantRow, Base):
    __tablename__ = "crm_notes"

    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="CASCADE"), default=None, index=True
    )
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_companies.id", ondelete="CASCADE"), default=None, index=True
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_deals.id", ondelete="CASCADE"), default=None, index=True
    )
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    text: Mapped[str] = mapped_column(String(10000))

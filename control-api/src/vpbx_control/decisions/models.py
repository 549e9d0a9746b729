"""The tenant's decision secret: the key that signs its HTTP decisions (one per tenant)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, utcnow


class DecisionSecretRow(Base):
    __tablename__ = "decision_secrets"

    tenant_id: Mapped[str] = mapped_column(
        String(63), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # Needed in clear: the media nodes sign with it. Shown once, when rotated.
    secret: Mapped[str] = mapped_column(String(128))
    # When this secret was made (rotation replaces it, so also "rotated at").
    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp()
    )

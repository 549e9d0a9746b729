"""The outbox of deal events on their way to the analytics store (ClickHouse ``deal_events``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_control.db.base import utcnow

from ..db.base import Base


class DealOutboxRow(Base):
    """One deal step not yet in the analytics store, written in the transaction that made the
    step (so a step is in the outbox exactly when it is in the deal's history) and deleted by
    the shipper only after the store took it."""

    __tablename__ = "crm_deal_outbox"

    # The step's id in the deal's history (crm_deal_events.id), which is also the store's
    # event_id: shipping a row twice makes one row there. No foreign key: a deleted deal's
    # steps still go to the reports.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    event: Mapped[dict[str, Any]] = mapped_column()  # vpbx_common.cdr.DealEvent.to_json()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

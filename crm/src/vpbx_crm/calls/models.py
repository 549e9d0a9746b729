"""The call timeline: one row per call the nodes reported, tied to the contact it was with."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_control.db.base import utcnow

from ..db.base import Base


class CallRow(Base):
    __tablename__ = "crm_calls"
    __table_args__ = (Index("ix_crm_calls_contact_started", "contact_id", "started_at"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(1024), primary_key=True)  # the CDR's (SIP Call-ID)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="SET NULL"), default=None
    )
    direction: Mapped[str] = mapped_column(String(16), default="")  # inbound, outbound, internal
    phone: Mapped[str] = mapped_column(String(32), default="")  # the outside party
    number: Mapped[str] = mapped_column(String(32), default="")  # the tenant's number dialled
    label: Mapped[str] = mapped_column(String(63), default="")
    caller: Mapped[str] = mapped_column(Text, default="")
    callee: Mapped[str] = mapped_column(Text, default="")  # every extension offered
    answered_by: Mapped[str] = mapped_column(String(32), default="")  # extension
    answered_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    status: Mapped[str] = mapped_column(String(16), default="ringing")  # ringing/talking/ended
    end_reason: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    recording_key: Mapped[str] = mapped_column(String(300), default="")
    recording_ms: Mapped[int] = mapped_column(Integer, default=0)
    voicemail_key: Mapped[str] = mapped_column(String(300), default="")
    voicemail_ms: Mapped[int] = mapped_column(Integer, default=0)
    # What the agent wrote down after the call (the after-call form), once: the checked
    # stages of the script, the outcome and the actions taken (see calls/results.py).
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    result_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    result_at: Mapped[dt.datetime | None] = mapped_column(default=None)

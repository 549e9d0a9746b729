"""One voice message left in a tenant's box; the audio itself is in the object store."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base

# Voicemail ids are derived from (tenant, call id): the inbox consumer and the webhook
# bridge read the same voicemail.new in different consumer groups, and both must name the
# same voicemail (the webhook's audio URL) without talking to each other.
VOICEMAIL_ID_NAMESPACE = uuid.UUID("5d0c5a36-4f3e-4f44-9a53-0b7a0f4e6c21")


def voicemail_id(tenant: str, call_id: str) -> uuid.UUID:
    return uuid.uuid5(VOICEMAIL_ID_NAMESPACE, f"{tenant}\n{call_id}")


class VoicemailRow(Base):
    __tablename__ = "voicemails"
    __table_args__ = (
        UniqueConstraint("tenant_id", "call_id"),
        Index("ix_voicemails_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(1024))
    box: Mapped[str] = mapped_column(String(32))  # the box's extension; '' = the general box
    # The box owner; None for the general box, or once the user is deleted (the message
    # stays for supervisors and admins).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    caller: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(64))  # what the caller dialled
    city: Mapped[str] = mapped_column(String(63))
    duration_ms: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(1024))  # object store key (vpbx_common.storage)
    created_at: Mapped[dt.datetime]  # when the message was left (the event's time)
    listened_at: Mapped[dt.datetime | None]
    # Deleted through the API: the audio is gone, the row stays as a tombstone so that the
    # same voicemail.new delivered again (at least once) cannot bring the message back.
    deleted_at: Mapped[dt.datetime | None]

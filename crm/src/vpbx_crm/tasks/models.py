"""Tasks (call back, missed call, voicemail, follow-up) and the workspace's notifications."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import Enum, ForeignKey, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_control.db.base import enum_values, utcnow

from ..db.base import Base, TenantRow


class TaskKind(enum.StrEnum):
    CALL_BACK = "call-back"
    MISSED_CALL = "missed-call"
    VOICEMAIL = "voicemail"
    FOLLOW_UP = "follow-up"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class TaskRow(TenantRow, Base):
    __tablename__ = "crm_tasks"
    # One task of a kind per call: the call-event reader may see an event twice.
    __table_args__ = (
        UniqueConstraint("tenant_id", "call_id", "kind"),
        Index("ix_crm_tasks_tenant_assignee_status", "tenant_id", "assignee_user_id", "status"),
    )

    kind: Mapped[TaskKind] = mapped_column(
        Enum(TaskKind, name="crm_task_kind", values_callable=enum_values, native_enum=False)
    )
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, name="crm_task_status", values_callable=enum_values, native_enum=False),
        default=TaskStatus.OPEN,
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="CASCADE"), default=None, index=True
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_deals.id", ondelete="SET NULL"), default=None
    )
    call_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    assignee_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    due_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    done_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    result: Mapped[str] = mapped_column(String(2000), default="")
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)


class NotificationRow(Base):
    """Something a user should see in the workspace (a task given to them)."""

    __tablename__ = "crm_notifications"
    __table_args__ = (Index("ix_crm_notifications_user", "tenant_id", "user_id", "read_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(63))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(String(500))
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_tasks.id", ondelete="CASCADE"), default=None
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("crm_contacts.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(default=None)

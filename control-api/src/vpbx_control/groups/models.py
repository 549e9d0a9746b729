"""Ring groups and their ordered, weighted members."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class GroupRow(TenantOwned, Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    strategy: Mapped[str] = mapped_column(String(32))  # groups.schemas.Strategy
    ring_timeout_s: Mapped[int] = mapped_column(Integer, default=30)
    # escalating: add the next member every N seconds
    escalation_interval_s: Mapped[int] = mapped_column(Integer, default=10)
    # One-at-a-time strategies: how long each member rings (None: an equal share).
    member_ring_s: Mapped[int | None] = mapped_column(Integer, default=None)
    # Where the call goes when nobody answers: a Target document (targets.py) or null.
    overflow: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # round-robin: the member that rang last (the node reports it; remembered here)
    # Unused since the nodes keep the round-robin pointer in Redis (vpbx_common.agents);
    # kept until a migration drops the column.
    last_member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)


class GroupMemberRow(Base):
    """A user of the tenant, or a number outside (``user_id`` null), in a group."""

    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    group_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    # E.164 of a member outside, rung through the tenant's trunks (since 0015).
    number: Mapped[str | None] = mapped_column(String(16), default=None, nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1)

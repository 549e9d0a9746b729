"""IVR menus and their prompts (audio converted to the node's format on upload)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class IvrMenuRow(TenantOwned, Base):
    __tablename__ = "ivr_menus"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    # {"kind": "audio", "prompt_id"} | {"kind": "tone", ...} | {"kind": "tts", "text"}
    prompt: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # digit -> Target document
    timeout_s: Mapped[int] = mapped_column(Integer, default=5)
    timeout_target: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    invalid_target: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # How often the menu is replayed after a timeout or an invalid digit before
    # the call goes to timeout_target / invalid_target (migration 0004).
    max_retries: Mapped[int] = mapped_column(Integer, default=2, server_default="2")


class PromptRow(TenantOwned, Base):
    """An uploaded prompt, stored converted: 8 kHz mono 16-bit PCM WAV."""

    __tablename__ = "prompts"

    name: Mapped[str] = mapped_column(String(100))
    ivr_menu_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("ivr_menus.id", ondelete="SET NULL"), default=None
    )
    duration_ms: Mapped[int] = mapped_column(Integer)
    audio: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))

"""IVR menus and their prompts (uploads and rendered speech, stored in the node's format)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from vpbx_common.audio import ConvertedPrompt

from ..db.base import Base, TenantOwned


class IvrMenuRow(TenantOwned, Base):
    __tablename__ = "ivr_menus"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    # {"kind": "audio", "prompt_id"} | {"kind": "tone", ...}; a tts prompt is rendered when
    # saved and stored as {"kind": "audio", "prompt_id"} of a prompt carrying its text.
    # {"kind": "tts", "text", "language"} without audio: saved before speech was rendered.
    prompt: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # digit -> Target document
    timeout_s: Mapped[int] = mapped_column(Integer, default=5)
    timeout_target: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    invalid_target: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # How often the menu is replayed after a timeout or an invalid digit before
    # the call goes to timeout_target / invalid_target (migration 0004).
    max_retries: Mapped[int] = mapped_column(Integer, default=2, server_default="2")


class PromptRow(TenantOwned, Base):
    """A prompt as the nodes play it: 8 kHz mono 16-bit PCM WAV, converted from an upload
    or rendered from text (then ``text`` and ``language`` say what it speaks)."""

    __tablename__ = "prompts"

    name: Mapped[str] = mapped_column(String(100))
    ivr_menu_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("ivr_menus.id", ondelete="SET NULL"), default=None
    )
    duration_ms: Mapped[int] = mapped_column(Integer)
    audio: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    # Rendered speech only (migration 0006): the text and its BCP 47 language.
    text: Mapped[str | None] = mapped_column(Text, default=None)
    language: Mapped[str | None] = mapped_column(String(35), default=None)
    # Uploaded to the tenant's prompt library (/v1/prompts, migration 0011): kept until the
    # tenant deletes it, never by the clean-up of prompts nothing plays any more.
    library: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @classmethod
    def converted(cls, audio: ConvertedPrompt, name: str, **fields: Any) -> PromptRow:
        """A new prompt holding ``audio`` (an upload or speech, in the node's format)."""
        return cls(
            id=uuid.uuid4(),
            name=name[:100],
            duration_ms=audio.duration_ms,
            audio=audio.wav,
            sha256=audio.sha256,
            revision=1,
            **fields,
        )

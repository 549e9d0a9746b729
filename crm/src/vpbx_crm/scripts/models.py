"""A call script: its name, the numbers and campaign labels it is for, its ordered stages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantRow


class CallScriptRow(TenantRow, Base):
    __tablename__ = "crm_call_scripts"

    name: Mapped[str] = mapped_column(String(100))
    # A tenant has a handful of scripts: they are matched to a call in Python, so the lists
    # are plain JSON rather than tables of their own.
    numbers: Mapped[list[Any]] = mapped_column(default=list)  # E.164
    labels: Mapped[list[Any]] = mapped_column(default=list)  # campaign (ad-channel) labels
    stages: Mapped[list[Any]] = mapped_column(default=list)  # texts, in order

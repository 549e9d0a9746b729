"""What the tenant paid for an ad channel in one calendar month."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, TenantOwned


class AdSpendRow(TenantOwned, Base):
    __tablename__ = "ad_channel_spend"
    __table_args__ = (UniqueConstraint("tenant_id", "label", "month"),)

    # The label as numbers carry it (a Number's spec.label); a channel may have spend
    # before any number carries its label, or after the last one stopped.
    label: Mapped[str] = mapped_column(String(63))
    month: Mapped[dt.date] = mapped_column(Date)  # the first day of the calendar month
    # Minor units (kopecks, cents): integers are exact on PostgreSQL and SQLite alike,
    # where SQLite would keep a NUMERIC as a float.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

"""Request and response documents of /v1/ad-channels."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ..schema_base import StrictInput

# 1970-2099: the months a report's period can touch (reports/period.py).
MONTH_PATTERN = r"^(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])$"
# Numeric(14, 2) worth of money: beyond any month's advertising, inside a 64-bit integer.
MAX_AMOUNT = Decimal("999999999999.99")

Amount = Annotated[
    Decimal,
    Field(
        ge=0,
        le=MAX_AMOUNT,
        decimal_places=2,
        description="what the channel cost in the month, at most 2 decimals; a string "
        "(exact) or a JSON number",
        examples=["15000.00"],
    ),
]
Currency = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code; all of a tenant's spend is in one currency",
        examples=["RUB"],
    ),
]

EXAMPLE: dict[str, JsonValue] = {"amount": "15000.00", "currency": "RUB"}


class SpendIn(StrictInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    amount: Amount
    currency: Currency | None = Field(
        default=None,
        description="left out: the currency the tenant's spend is already in (RUB at first)",
    )


class MonthSpendOut(BaseModel):
    month: str = Field(examples=["2026-11"], description="YYYY-MM")
    amount: Decimal = Field(examples=["15000.00"])
    currency: str = Field(examples=["RUB"])


class SpendOut(MonthSpendOut):
    label: str = Field(examples=["yandex-direct"])
    revision: int
    updated_at: dt.datetime


class AdChannelOut(BaseModel):
    label: str = Field(examples=["yandex-direct"])
    numbers: list[str] = Field(
        description="the tenant's numbers carrying the label now (E.164); empty for a "
        "channel with spend and no number any more",
        examples=[["+74950000001"]],
    )
    spend: list[MonthSpendOut] = Field(description="recorded spend per month, oldest first")

"""Deal request and response bodies, a deal's history and the pipeline's board."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

from ..fields import CustomFields, Label
from .models import DealEventKind, StageKind

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(examples=["Офисные АТС на 3 города"]),
]
# Numeric(14, 2) in the table: 12 digits before the point.
Amount = Annotated[
    Decimal,
    Field(
        ge=0,
        max_digits=14,
        decimal_places=2,
        description="a JSON string or number, at most 2 decimals; answered as a string",
        examples=["150000.00"],
    ),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["RUB"])]
LossReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200),
    Field(description="why the deal was lost; required in a lost stage, '' otherwise"),
]


class DealCreate(StrictInput):
    title: Title
    pipeline_id: uuid.UUID | None = Field(
        default=None, description="leave out for the tenant's first pipeline"
    )
    stage_id: uuid.UUID | None = Field(
        default=None,
        description="a stage of the pipeline (422 otherwise); leave out for its first open stage",
    )
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = Field(
        default=None, description="leave out for the contact's company"
    )
    amount: Amount | None = None
    currency: Currency = "RUB"
    owner_user_id: uuid.UUID | None = Field(
        default=None,
        description="the responsible manager; leave out for yourself (a user's login)",
    )
    loss_reason: LossReason = ""
    source_label: Label = Field(
        default="", description="the ad channel; leave out for the contact's"
    )
    custom: CustomFields = Field(default_factory=dict)


class DealUpdate(StrictInput):
    """Only the fields given change. A new ``stage_id`` (or ``pipeline_id``) moves the deal
    and writes its history; moving to a lost stage needs ``loss_reason``."""

    title: Title | None = None
    pipeline_id: uuid.UUID | None = Field(
        default=None,
        description="another pipeline: the deal goes to ``stage_id``, else to its first open stage",
    )
    stage_id: uuid.UUID | None = Field(
        default=None, description="a stage of the deal's (or the given) pipeline"
    )
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    owner_user_id: uuid.UUID | None = None
    loss_reason: LossReason | None = None
    source_label: Label | None = None
    custom: CustomFields | None = None


class Deal(BaseModel):
    id: uuid.UUID
    title: str
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID
    status: StageKind = Field(description="the kind of its stage: open, won or lost")
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    contact_name: str | None = Field(default=None, description="the contact's name, if any")
    company_name: str | None = Field(default=None, description="the company's name, if any")
    amount: Decimal | None = Field(examples=["150000.00"])
    currency: str
    owner_user_id: uuid.UUID | None
    loss_reason: str
    source_label: str
    closed_at: dt.datetime | None = Field(description="when it was won or lost; null while open")
    custom: dict[str, str | int | float | bool | None]
    created_at: dt.datetime
    updated_at: dt.datetime


class DealEvent(BaseModel):
    id: uuid.UUID
    kind: DealEventKind = Field(
        description="created; moved (between stages of one kind); won, lost; reopened (back "
        "to an open stage)"
    )
    from_stage_id: uuid.UUID | None
    to_stage_id: uuid.UUID | None
    amount: Decimal | None = Field(description="the deal's amount after the step")
    user_id: uuid.UUID | None = Field(description="who made the step (null: an API key)")
    at: dt.datetime


class BoardStage(BaseModel):
    id: uuid.UUID
    name: str
    kind: StageKind
    position: int
    count: int = Field(description="the deals in the stage, all of them")
    totals: dict[str, Decimal] = Field(
        description="their amounts summed per currency (a deal without an amount adds nothing)",
        examples=[{"RUB": "450000.00"}],
    )
    deals: list[Deal] = Field(description="the newest of them, at most ``per_stage``")


class Board(BaseModel):
    pipeline_id: uuid.UUID
    name: str
    stages: list[BoardStage] = Field(description="in order")

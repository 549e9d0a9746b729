"""Contact request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field

from vpbx_control.schema_base import StrictInput

from ..fields import Category, CustomFields, Email, Label, Name, PhoneText


class ContactCreate(StrictInput):
    name: Name = Field(examples=["Иван Петров"])
    phones: list[PhoneText] = Field(
        default_factory=list,
        max_length=10,
        description="any common form (+7 916 123-45-67, 8 916 1234567); stored as E.164, "
        "each unique within the tenant",
        examples=[["+79161234567"]],
    )
    emails: list[Email] = Field(default_factory=list, max_length=10)
    company_id: uuid.UUID | None = None
    category: Category = "client"
    owner_user_id: uuid.UUID | None = Field(
        default=None, description="the responsible manager (a user of the tenant)"
    )
    vip: bool = False
    source_label: Label = Field(default="", description="the ad channel that brought them")
    custom: CustomFields = Field(default_factory=dict)


class ContactUpdate(StrictInput):
    """Only the fields given change; ``phones`` replaces the whole list."""

    name: Name | None = None
    phones: list[PhoneText] | None = Field(default=None, max_length=10)
    emails: list[Email] | None = Field(default=None, max_length=10)
    company_id: uuid.UUID | None = None
    category: Category | None = None
    owner_user_id: uuid.UUID | None = None
    vip: bool | None = None
    source_label: Label | None = None
    custom: CustomFields | None = None


class Contact(BaseModel):
    id: uuid.UUID
    name: str
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    company_id: uuid.UUID | None
    category: str
    region: str = Field(description="derived from the first phone: RU-NVS, DE:Berlin, RU or ''")
    region_name: str
    owner_user_id: uuid.UUID | None
    vip: bool
    source_label: str
    custom: dict[str, str | int | float | bool | None]
    created_at: dt.datetime
    updated_at: dt.datetime

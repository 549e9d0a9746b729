"""Company request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

from ..fields import Category, CustomFields, Email, Name, PhoneText

# ИНН: 10 digits for an organisation, 12 for a sole trader; '' when unknown. [0-9], not \d:
# \d would take other scripts' digits too.
TaxId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^([0-9]{10}|[0-9]{12})?$"),
    Field(description="ИНН: 10 or 12 digits, or '' when unknown", examples=["7707083893"]),
]
Website = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^\S*$"),
    Field(examples=["https://acme.example"]),
]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class CompanyCreate(StrictInput):
    name: Name = Field(examples=["ООО Ромашка"])
    phones: list[PhoneText] = Field(
        default_factory=list,
        max_length=10,
        description="any common form; stored as E.164. Unlike a contact's, a company's phone "
        "may be shared (a switchboard) and does not route calls",
        examples=[["+74951234567"]],
    )
    emails: list[Email] = Field(default_factory=list, max_length=10)
    website: Website = ""
    address: Address = ""
    tax_id: TaxId = ""
    category: Category = "client"
    owner_user_id: uuid.UUID | None = Field(
        default=None, description="the responsible manager (a user of the tenant)"
    )
    custom: CustomFields = Field(default_factory=dict)


class CompanyUpdate(StrictInput):
    """Only the fields given change; ``phones`` and ``emails`` replace the whole list."""

    name: Name | None = None
    phones: list[PhoneText] | None = Field(default=None, max_length=10)
    emails: list[Email] | None = Field(default=None, max_length=10)
    website: Website | None = None
    address: Address | None = None
    tax_id: TaxId | None = None
    category: Category | None = None
    owner_user_id: uuid.UUID | None = None
    custom: CustomFields | None = None


class Company(BaseModel):
    id: uuid.UUID
    name: str
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    website: str
    address: str
    tax_id: str
    category: str
    owner_user_id: uuid.UUID | None
    custom: dict[str, str | int | float | bool | None]
    created_at: dt.datetime
    updated_at: dt.datetime

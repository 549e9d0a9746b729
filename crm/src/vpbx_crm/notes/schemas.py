"""Note request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

NoteText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10000),
    Field(examples=["Просил перезвонить после 15:00, интересует АТС на 3 офиса"]),
]


class NoteCreate(StrictInput):
    """A note is on exactly one of a contact, a company or a deal."""

    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    text: NoteText


class NoteUpdate(StrictInput):
    text: NoteText


class Note(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    author_user_id: uuid.UUID | None = Field(description="null: written with an API key")
    text: str
    created_at: dt.datetime
    updated_at: dt.datetime

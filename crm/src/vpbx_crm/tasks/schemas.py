"""Task and notification bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

from .models import TaskKind, TaskStatus

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Result = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class TaskCreate(StrictInput):
    kind: TaskKind = TaskKind.FOLLOW_UP
    title: Title
    contact_id: uuid.UUID | None = None
    call_id: str | None = Field(default=None, max_length=1024, description="the CDR's call id")
    assignee_user_id: uuid.UUID | None = Field(
        default=None, description="left out: the user creating it"
    )
    due_at: AwareDatetime | None = Field(default=None, description="with its time zone")


class TaskUpdate(StrictInput):
    title: Title | None = None
    status: TaskStatus | None = None
    result: Result | None = Field(default=None, description="what came of it (closing it)")
    assignee_user_id: uuid.UUID | None = None
    due_at: AwareDatetime | None = None


class Task(BaseModel):
    id: uuid.UUID
    kind: TaskKind
    title: str
    status: TaskStatus
    contact_id: uuid.UUID | None
    contact_name: str | None = Field(default=None, description="the contact's name, if any")
    deal_id: uuid.UUID | None
    call_id: str | None
    assignee_user_id: uuid.UUID | None
    due_at: dt.datetime | None
    done_at: dt.datetime | None
    result: str
    created_at: dt.datetime
    updated_at: dt.datetime


class Notification(BaseModel):
    id: uuid.UUID
    kind: str
    text: str
    task_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    created_at: dt.datetime
    read_at: dt.datetime | None

"""Every CRM table, imported once so the metadata (and Alembic) sees them all."""

from __future__ import annotations

from ..analytics.models import DealOutboxRow
from ..calls.models import CallRow
from ..companies.models import CompanyRow
from ..contacts.models import ContactPhoneRow, ContactRow
from ..deals.models import DealEventRow, DealRow, PipelineRow, StageRow
from ..notes.models import NoteRow
from ..scripts.models import CallScriptRow
from ..tasks.models import NotificationRow, TaskRow
from .base import Base

__all__ = [
    "Base",
    "CallRow",
    "CallScriptRow",
    "CompanyRow",
    "ContactPhoneRow",
    "ContactRow",
    "DealEventRow",
    "DealOutboxRow",
    "DealRow",
    "NoteRow",
    "NotificationRow",
    "PipelineRow",
    "StageRow",
    "TaskRow",
]

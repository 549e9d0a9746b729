"""Imports every table, so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

from ..adchannels.models import AdSpendRow
from ..apikeys.models import ApiKeyRow
from ..conferences.models import ConferenceRoomRow
from ..decisions.models import DecisionSecretRow
from ..groups.models import GroupMemberRow, GroupRow
from ..ivr.models import IvrMenuRow, PromptRow
from ..numbers.models import NumberGreetingRow, PoolNumberRow
from ..routeplans.models import RoutePlanRow
from ..schedules.models import ScheduleRow
from ..tenants.models import TenantRow
from ..trunks.models import TrunkRow
from ..users.models import DeviceRow, UserRow
from ..voicemails.models import VoicemailRow
from ..webhooks.models import WebhookDeliveryRow, WebhookRow
from .base import Base

__all__ = [
    "AdSpendRow",
    "ApiKeyRow",
    "Base",
    "ConferenceRoomRow",
    "DecisionSecretRow",
    "DeviceRow",
    "GroupMemberRow",
    "GroupRow",
    "IvrMenuRow",
    "NumberGreetingRow",
    "PoolNumberRow",
    "PromptRow",
    "RoutePlanRow",
    "ScheduleRow",
    "TenantRow",
    "TrunkRow",
    "UserRow",
    "VoicemailRow",
    "WebhookDeliveryRow",
    "WebhookRow",
]

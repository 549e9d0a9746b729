"""A deal's step as the analytics store's DealEvent, put in the outbox beside the step."""

from __future__ import annotations

import datetime as dt

from vpbx_common.cdr import DealEvent, DealEventKind, minor_units
from vpbx_control.db.base import as_utc

from ..deals.models import DealEventKind as HistoryKind
from ..deals.models import DealEventRow, DealRow
from .models import DealOutboxRow

# The CRM's history says "moved" for a step between open stages; the store names it for the
# reports' readers.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)

KINDS = {
    HistoryKind.CREATED: DealEventKind.CREATED,
    HistoryKind.MOVED: DealEventKind.STAGE_CHANGED,
    HistoryKind.WON: DealEventKind.WON,
    HistoryKind.LOST: DealEventKind.LOST,
    HistoryKind.REOPENED: DealEventKind.REOPENED,
}


def deal_event(step: DealEventRow, deal: DealRow, label: str) -> DealEvent:
    """The store's event for ``step`` of ``deal`` (as the deal is after the step)."""
    return DealEvent(
        tenant=step.tenant_id,
        event_id=str(step.id),
        deal_id=str(deal.id),
        kind=KINDS[step.kind],
        at_ms=(as_utc(step.at) - _EPOCH) // _MS,
        contact_id="" if deal.contact_id is None else str(deal.contact_id),
        label=label,
        stage="" if step.to_stage_id is None else str(step.to_stage_id),
        pipeline=str(deal.pipeline_id),
        amount=None if deal.amount is None else minor_units(deal.amount),
        currency=deal.currency,
        user_id="" if step.user_id is None else str(step.user_id),
        owner_user_id="" if deal.owner_user_id is None else str(deal.owner_user_id),
    )


def outbox_row(step: DealEventRow, deal: DealRow, label: str) -> DealOutboxRow:
    return DealOutboxRow(
        id=step.id,
        tenant_id=step.tenant_id,
        event=deal_event(step, deal, label).to_json(),
        created_at=step.at,
    )

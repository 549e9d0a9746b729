"""The caller's card for a screen pop: company and open deals, read after the pop went out.

The pop itself is built from the event (the node's lookup put name, category, owner and VIP
on it) and the cached directory, so it never waits for the database; this second read adds
what the event does not carry. Three indexed reads, each scoped to the tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from vpbx_common.e164 import is_e164
from vpbx_control.db.session import Database

from ..companies.models import CompanyRow
from ..contacts.models import ContactPhoneRow, ContactRow
from ..deals.models import DealRow, StageKind, StageRow

# Open deals shown on a pop: the newest few (a card has room for a line each).
MAX_DEALS = 5


@dataclass(frozen=True, slots=True)
class CardDeal:
    id: str
    title: str
    stage: str


@dataclass(frozen=True, slots=True)
class CallerCard:
    contact_id: str
    name: str
    category: str
    vip: bool
    owner_user_id: str | None
    company_id: str | None
    company_name: str
    deals: tuple[CardDeal, ...]


async def load_card(
    database: Database, tenant: str, *, contact_id: str | None, phone: str
) -> CallerCard | None:
    """The contact with ``contact_id`` (the node's lookup found it), else the one whose phone
    ``phone`` is; None when the tenant has neither."""
    async with database.session() as session:
        contact: ContactRow | None = None
        if contact_id is not None:
            try:
                wanted = uuid.UUID(contact_id)
            except ValueError:
                wanted = None
            if wanted is not None:
                contact = await session.scalar(
                    select(ContactRow).where(
                        ContactRow.tenant_id == tenant, ContactRow.id == wanted
                    )
                )
        if contact is None and is_e164(phone):
            contact = await session.scalar(
                select(ContactRow)
                .join(ContactPhoneRow, ContactPhoneRow.contact_id == ContactRow.id)
                .where(ContactPhoneRow.tenant_id == tenant, ContactPhoneRow.phone == phone)
            )
        if contact is None:
            return None
        company_name = ""
        if contact.company_id is not None:
            company_name = (
                await session.scalar(
                    select(CompanyRow.name).where(
                        CompanyRow.tenant_id == tenant, CompanyRow.id == contact.company_id
                    )
                )
                or ""
            )
        rows = await session.execute(
            select(DealRow.id, DealRow.title, StageRow.name)
            .join(StageRow, StageRow.id == DealRow.stage_id)
            .where(
                DealRow.tenant_id == tenant,
                DealRow.contact_id == contact.id,
                StageRow.kind == StageKind.OPEN,
            )
            .order_by(DealRow.created_at.desc())
            .limit(MAX_DEALS)
        )
        deals = tuple(CardDeal(str(i), title, stage) for i, title, stage in rows)
        return CallerCard(
            contact_id=str(contact.id),
            name=contact.name,
            category=contact.category,
            vip=contact.vip,
            owner_user_id=str(contact.owner_user_id) if contact.owner_user_id else None,
            company_id=str(contact.company_id) if contact.company_id else None,
            company_name=company_name,
            deals=deals,
        )

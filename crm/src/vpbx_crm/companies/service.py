"""Companies: create, read, search, change, delete.

A company's phones are kept in E.164 like a contact's but are not unique and do not route
calls: a switchboard number is shared by the people behind it, and the routing lookup
finds people (contacts), not organisations.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, or_
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.paging import PageParams

from ..contacts.phones import normalized_phones
from ..db.base import folded
from ..identity import Caller, IdentityClient
from ..ownership import check_owner
from .models import CompanyRow
from .repository import Companies
from .schemas import Company, CompanyCreate, CompanyUpdate


class CompanyService:
    def __init__(
        self, session: AsyncSession, caller: Caller, identity: IdentityClient, country: str
    ) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity
        self.country = country
        self.companies = Companies(session, caller.tenant)

    # --- reads --------------------------------------------------------------------

    def search(
        self,
        *,
        text: str | None = None,
        owner_user_id: uuid.UUID | None = None,
        category: str | None = None,
    ) -> Select[tuple[CompanyRow]]:
        query = self.companies.scoped()
        if text:
            matches = [CompanyRow.search_text.contains(folded(text))]
            digits = text.strip()
            if digits.isascii() and digits.isdigit():
                matches.append(CompanyRow.tax_id.contains(digits))
            query = query.where(or_(*matches))
        if owner_user_id is not None:
            query = query.where(CompanyRow.owner_user_id == owner_user_id)
        if category is not None:
            query = query.where(CompanyRow.category == category)
        return query.order_by(CompanyRow.name, CompanyRow.id)

    async def page(
        self, query: Select[tuple[CompanyRow]], params: PageParams
    ) -> tuple[list[Company], int]:
        rows, total = await self.companies.page(query, params)
        return views(rows), total

    # --- writes -------------------------------------------------------------------

    async def create(self, body: CompanyCreate) -> CompanyRow:
        phones = normalized_phones(body.phones, "body.phones", self.country)
        if body.owner_user_id is not None:
            await check_owner(
                self.identity, self.caller, body.owner_user_id, None, "body.owner_user_id"
            )
        row = self.companies.add(
            CompanyRow(
                id=uuid.uuid4(),
                name=body.name,
                phones=phones,
                emails=list(body.emails),
                website=body.website,
                address=body.address,
                tax_id=body.tax_id,
                category=body.category,
                owner_user_id=body.owner_user_id,
                custom=dict(body.custom),
                revision=1,
            )
        )
        await self.session.commit()
        return row

    async def update(self, row: CompanyRow, body: CompanyUpdate) -> CompanyRow:
        given = body.model_fields_set
        if "phones" in given and body.phones is not None:
            row.phones = normalized_phones(body.phones, "body.phones", self.country)
        if "owner_user_id" in given and body.owner_user_id != row.owner_user_id:
            await check_owner(
                self.identity,
                self.caller,
                body.owner_user_id,
                row.owner_user_id,
                "body.owner_user_id",
            )
            row.owner_user_id = body.owner_user_id
        for name in ("name", "website", "address", "tax_id", "category"):
            value = getattr(body, name)
            if name in given and value is not None:
                setattr(row, name, value)
        if "emails" in given and body.emails is not None:
            row.emails = list(body.emails)
        if "custom" in given and body.custom is not None:
            row.custom = dict(body.custom)
        self.companies.touch(row)
        await self.session.commit()
        return row

    async def delete(self, row: CompanyRow) -> None:
        """Its contacts and deals stay, without a company (the foreign keys set it null);
        its notes go with it."""
        await self.session.delete(row)
        await self.session.commit()


def view(row: CompanyRow) -> Company:
    return Company(
        id=row.id,
        name=row.name,
        phones=list(row.phones),
        emails=list(row.emails),
        website=row.website,
        address=row.address,
        tax_id=row.tax_id,
        category=row.category,
        owner_user_id=row.owner_user_id,
        custom=dict(row.custom),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def views(rows: Sequence[CompanyRow]) -> list[Company]:
    return [view(row) for row in rows]

"""Contacts: create, read, search, change, delete; phones unique within the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.auth.principal import MANAGERS
from vpbx_control.paging import PageParams

from ..companies.repository import Companies
from ..db.base import folded
from ..errors import Conflict, Forbidden, PhoneTaken
from ..identity import Caller, IdentityClient
from ..ownership import check_owner
from .models import ContactPhoneRow, ContactRow
from .phones import normalized_phones, region_of_phones
from .repository import Contacts
from .schemas import Contact, ContactCreate, ContactUpdate


class ContactService:
    def __init__(
        self, session: AsyncSession, caller: Caller, identity: IdentityClient, country: str
    ) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity
        self.country = country
        self.contacts = Contacts(session, caller.tenant)

    # --- reads --------------------------------------------------------------------

    async def phones_of(self, contact_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        phones: dict[uuid.UUID, list[str]] = {contact_id: [] for contact_id in contact_ids}
        if not contact_ids:
            return phones
        rows = await self.session.execute(
            select(ContactPhoneRow.contact_id, ContactPhoneRow.phone)
            .where(
                ContactPhoneRow.tenant_id == self.caller.tenant,
                ContactPhoneRow.contact_id.in_(contact_ids),
            )
            .order_by(ContactPhoneRow.position)
        )
        for contact_id, phone in rows:
            phones[contact_id].append(phone)
        return phones

    async def view(self, row: ContactRow) -> Contact:
        return (await self.views([row]))[0]

    async def views(self, rows: Sequence[ContactRow]) -> list[Contact]:
        phones = await self.phones_of([row.id for row in rows])
        return [_contact(row, phones[row.id]) for row in rows]

    def search(
        self,
        *,
        phone: str | None = None,
        text: str | None = None,
        owner_user_id: uuid.UUID | None = None,
        category: str | None = None,
        company_id: uuid.UUID | None = None,
        vip: bool | None = None,
    ) -> Select[tuple[ContactRow]]:
        query = self.contacts.scoped()
        if phone is not None:
            query = query.where(
                ContactRow.id.in_(
                    select(ContactPhoneRow.contact_id).where(
                        ContactPhoneRow.tenant_id == self.caller.tenant,
                        ContactPhoneRow.phone == phone,
                    )
                )
            )
        if text:
            digits = "".join(ch for ch in text if ch.isdigit())
            matches = [ContactRow.search_text.contains(folded(text))]
            if len(digits) >= 3:
                matches.append(
                    ContactRow.id.in_(
                        select(ContactPhoneRow.contact_id).where(
                            ContactPhoneRow.tenant_id == self.caller.tenant,
                            ContactPhoneRow.phone.contains(digits),
                        )
                    )
                )
            query = query.where(or_(*matches))
        if owner_user_id is not None:
            query = query.where(ContactRow.owner_user_id == owner_user_id)
        if category is not None:
            query = query.where(ContactRow.category == category)
        if company_id is not None:
            query = query.where(ContactRow.company_id == company_id)
        if vip is not None:
            query = query.where(ContactRow.vip == vip)
        return query.order_by(ContactRow.name, ContactRow.id)

    async def page(
        self, query: Select[tuple[ContactRow]], params: PageParams
    ) -> tuple[list[Contact], int]:
        rows, total = await self.contacts.page(query, params)
        return await self.views(rows), total

    # --- writes -------------------------------------------------------------------

    async def create(self, body: ContactCreate) -> ContactRow:
        phones = normalized_phones(body.phones, "body.phones", self.country)
        await self._check_phones_free(phones, None)
        if body.company_id is not None:
            await Companies(self.session, self.caller.tenant).referenced(
                body.company_id, "body.company_id"
            )
        owner = body.owner_user_id
        if owner is not None:
            await check_owner(self.identity, self.caller, owner, None, "body.owner_user_id")
        region, region_name = region_of_phones(phones)
        row = self.contacts.add(
            ContactRow(
                id=uuid.uuid4(),
                name=body.name,
                emails=list(body.emails),
                company_id=body.company_id,
                category=body.category,
                region=region,
                region_name=region_name,
                owner_user_id=owner,
                vip=body.vip,
                source_label=body.source_label,
                custom=dict(body.custom),
                created_by=self.caller.user_id,
                revision=1,
            )
        )
        await self.session.flush()
        self._add_phones(row.id, phones)
        await self._commit()
        return row

    async def update(self, row: ContactRow, body: ContactUpdate) -> ContactRow:
        given = body.model_fields_set
        # Phones and category decide where the client's calls ring: moving a colleague's
        # client's phone to a contact of one's own would take the client over.
        routing = given & {"phones", "category"}
        mine_or_free = row.owner_user_id in (None, self.caller.user_id)
        if routing and not mine_or_free and self.caller.role not in MANAGERS:
            raise Forbidden(
                "only the client's manager, supervisors and tenant admins change their "
                "phones or category"
            )
        if "phones" in given and body.phones is not None:
            phones = normalized_phones(body.phones, "body.phones", self.country)
            await self._check_phones_free(phones, row.id)
            await self.session.execute(
                delete(ContactPhoneRow).where(
                    ContactPhoneRow.tenant_id == self.caller.tenant,
                    ContactPhoneRow.contact_id == row.id,
                )
            )
            await self.session.flush()
            self._add_phones(row.id, phones)
            row.region, row.region_name = region_of_phones(phones)
        if "company_id" in given and body.company_id is not None:
            await Companies(self.session, self.caller.tenant).referenced(
                body.company_id, "body.company_id"
            )
        if "owner_user_id" in given and body.owner_user_id != row.owner_user_id:
            await check_owner(
                self.identity,
                self.caller,
                body.owner_user_id,
                row.owner_user_id,
                "body.owner_user_id",
            )
            row.owner_user_id = body.owner_user_id
        if "company_id" in given:
            row.company_id = body.company_id
        for name in ("name", "category", "vip", "source_label"):
            value = getattr(body, name)
            if name in given and value is not None:
                setattr(row, name, value)
        if "emails" in given and body.emails is not None:
            row.emails = list(body.emails)
        if "custom" in given and body.custom is not None:
            row.custom = dict(body.custom)
        self.contacts.touch(row)
        await self._commit()
        return row

    async def delete(self, row: ContactRow) -> None:
        if self.caller.role not in MANAGERS:
            raise Forbidden("only supervisors and tenant admins delete contacts")
        await self.session.delete(row)
        await self._commit()

    # --- helpers ------------------------------------------------------------------

    def _add_phones(self, contact_id: uuid.UUID, phones: Sequence[str]) -> None:
        for position, phone in enumerate(phones):
            self.session.add(
                ContactPhoneRow(
                    tenant_id=self.caller.tenant,
                    phone=phone,
                    contact_id=contact_id,
                    position=position,
                )
            )

    async def _check_phones_free(self, phones: Sequence[str], own: uuid.UUID | None) -> None:
        if not phones:
            return
        rows = await self.session.execute(
            select(ContactPhoneRow.phone, ContactPhoneRow.contact_id).where(
                ContactPhoneRow.tenant_id == self.caller.tenant,
                ContactPhoneRow.phone.in_(phones),
            )
        )
        for phone, contact_id in rows:
            if contact_id != own:
                raise PhoneTaken(phone, f"body.phones[{phones.index(phone)}]", str(contact_id))

    async def _commit(self) -> None:
        try:
            await self.session.commit()
        except IntegrityError as exc:
            # Two requests giving one phone to two contacts at once: the key refuses one.
            await self.session.rollback()
            raise Conflict("the change conflicts with another contact (phone taken?)") from exc


def _contact(row: ContactRow, phones: list[str]) -> Contact:
    return Contact(
        id=row.id,
        name=row.name,
        phones=phones,
        emails=list(row.emails),
        company_id=row.company_id,
        category=row.category,
        region=row.region,
        region_name=row.region_name,
        owner_user_id=row.owner_user_id,
        vip=row.vip,
        source_label=row.source_label,
        custom=dict(row.custom),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

"""Notes on a contact, a company or a deal; changed or deleted by their author or a
supervisor / tenant admin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.auth.principal import MANAGERS
from vpbx_control.paging import PageParams

from ..companies.repository import Companies
from ..contacts.repository import Contacts
from ..deals.repository import Deals
from ..errors import Conflict, FieldProblem, Forbidden, InvalidInput
from ..identity import Caller
from .models import NoteRow
from .repository import Notes
from .schemas import Note, NoteCreate, NoteUpdate

TARGETS = ("contact_id", "company_id", "deal_id")


def one_target(values: Mapping[str, uuid.UUID | None], place: str) -> tuple[str, uuid.UUID]:
    """The one of contact_id, company_id, deal_id given; 422 naming the fields otherwise
    (``place``: body or query)."""
    given = [(name, value) for name, value in values.items() if value is not None]
    if len(given) == 1:
        return given[0]
    named = [name for name, _ in given] or list(TARGETS)
    message = "exactly one of contact_id, company_id, deal_id"
    raise InvalidInput(
        f"{place}: {message}",
        details=[FieldProblem(field=f"{place}.{name}", message=message) for name in named],
    )


class NoteService:
    def __init__(self, session: AsyncSession, caller: Caller) -> None:
        self.session = session
        self.caller = caller
        self.notes = Notes(session, caller.tenant)

    async def check_target(self, name: str, target_id: uuid.UUID, place: str) -> None:
        """404 naming the field for a contact, company or deal the tenant does not have."""
        tenant = self.caller.tenant
        if name == "contact_id":
            await Contacts(self.session, tenant).referenced(target_id, f"{place}.{name}")
        elif name == "company_id":
            await Companies(self.session, tenant).referenced(target_id, f"{place}.{name}")
        else:
            await Deals(self.session, tenant).referenced(target_id, f"{place}.{name}")

    async def search(self, name: str, target_id: uuid.UUID) -> Select[tuple[NoteRow]]:
        await self.check_target(name, target_id, "query")
        column = {
            "contact_id": NoteRow.contact_id,
            "company_id": NoteRow.company_id,
            "deal_id": NoteRow.deal_id,
        }[name]
        return (
            self.notes.scoped()
            .where(column == target_id)
            .order_by(NoteRow.created_at.desc(), NoteRow.id.desc())
        )

    async def page(
        self, query: Select[tuple[NoteRow]], params: PageParams
    ) -> tuple[list[Note], int]:
        rows, total = await self.notes.page(query, params)
        return [view(row) for row in rows], total

    async def create(self, body: NoteCreate) -> NoteRow:
        name, target_id = one_target({name: getattr(body, name) for name in TARGETS}, "body")
        await self.check_target(name, target_id, "body")
        row = self.notes.add(
            NoteRow(
                id=uuid.uuid4(),
                author_user_id=self.caller.user_id,
                text=body.text,
                revision=1,
            )
        )
        setattr(row, name, target_id)
        await self._commit()
        return row

    async def update(self, row: NoteRow, body: NoteUpdate) -> NoteRow:
        self._check_author(row, "change")
        row.text = body.text
        self.notes.touch(row)
        await self.session.commit()
        return row

    async def delete(self, row: NoteRow) -> None:
        self._check_author(row, "delete")
        await self.session.delete(row)
        await self.session.commit()

    async def _commit(self) -> None:
        try:
            await self.session.commit()
        except IntegrityError as exc:
            # The contact, company or deal was deleted between the check and the insert.
            await self.session.rollback()
            raise Conflict("what the note is on was deleted meanwhile") from exc

    def _check_author(self, row: NoteRow, action: str) -> None:
        if self.caller.role in MANAGERS:
            return
        me = self.caller.user_id
        if me is None or row.author_user_id != me:
            raise Forbidden(f"only its author, supervisors and tenant admins {action} a note")


def view(row: NoteRow) -> Note:
    return Note(
        id=row.id,
        contact_id=row.contact_id,
        company_id=row.company_id,
        deal_id=row.deal_id,
        author_user_id=row.author_user_id,
        text=row.text,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

"""Importing contacts.

A row is a contact the CRM already has when one of its phones belongs to one (a phone
belongs to at most one contact of the tenant: it routes calls), or when its ``id`` column
names one (what an export writes, so contacts without phones survive a round trip).
``on_duplicate`` decides what such a row does. A phone twice in the file, or a row that is
two of the CRM's contacts at once, is a problem of the row.

What an import of N rows with P phones costs, whatever N:

- CPU: decoding and reading the file, then every row's values (phone normalisation is
  half of it), in a worker thread: some 0.2 ms a row (see ``transfer/__init__``);
- the control API: one read of the tenant's directory (owners by e-mail or name);
- reads: ``ceil(P / 500)`` of the phones' holders, ``2 * ceil(M / 500)`` of the M
  contacts the file names or whose phones it has (their values, their phones), one of the
  tenant's companies (id and name);
- writes, in one transaction: one ``executemany`` each of new companies, new contacts,
  changed contacts and phones, and ``ceil(U / 500)`` deletes of the U changed contacts'
  old phones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.db.base import utcnow

from ..companies.models import CompanyRow
from ..companies.repository import Companies
from ..contacts.models import ContactPhoneRow, ContactRow
from ..contacts.phones import region_of_phones
from ..contacts.repository import Contacts
from ..fields import CustomValue
from ..identity import Caller
from . import cells
from .columns import CONTACTS, ColumnPlan
from .importing import (
    Importer,
    ImportOptions,
    RowReader,
    Summary,
    Written,
    custom_cells,
    merged_custom,
    one,
)
from .owners import Owners
from .schemas import SAMPLE_SIZE, Action, ContactPreview, OnDuplicate, RowProblem
from .store import chunks, insert_many, name_key, plan_with_values, update_many
from .table import Cell, Table

NAME_LENGTH = 200
LABEL_LENGTH = 63

_COLUMNS = (
    ContactRow.id,
    ContactRow.name,
    ContactRow.emails,
    ContactRow.company_id,
    ContactRow.category,
    ContactRow.owner_user_id,
    ContactRow.vip,
    ContactRow.source_label,
    ContactRow.custom,
)

# The file's fields -> the contact's attribute they set.
_ATTRIBUTES = {
    "name": "name",
    "last_name": "name",
    "middle_name": "name",
    "phones": "phones",
    "emails": "emails",
    "company": "company_id",
    "category": "category",
    "owner": "owner_user_id",
    "vip": "vip",
    "source_label": "source_label",
}


@dataclass(slots=True)
class ContactValues:
    """A contact's importable values; the defaults are a new contact's."""

    name: str = ""
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    company_id: uuid.UUID | None = None
    category: str = "client"
    owner_user_id: uuid.UUID | None = None
    vip: bool = False
    source_label: str = ""
    custom: dict[str, CustomValue] = field(default_factory=dict)


@dataclass(slots=True)
class Draft:
    """One row as read, before anything is looked up."""

    line: int
    ok: bool
    id: uuid.UUID | None
    values: ContactValues  # the columns' values; the defaults for fields not in the file
    company: str  # the company's name as written ('' none)
    custom: dict[str, CustomValue]  # the custom columns; None: an empty cell


@dataclass(slots=True)
class Existing:
    id: uuid.UUID
    values: ContactValues


@dataclass
class CompanyIndex:
    """The tenant's companies, by name as people write it and by id."""

    by_key: dict[str, list[tuple[uuid.UUID, str]]] = field(default_factory=dict)
    names: dict[uuid.UUID, str] = field(default_factory=dict)

    def add(self, company_id: uuid.UUID, name: str) -> None:
        self.by_key.setdefault(name_key(name), []).append((company_id, name))
        self.names[company_id] = name


@dataclass(slots=True)
class Decision:
    line: int
    action: Action
    values: ContactValues
    existing: Existing | None
    company_name: str | None


def read_rows(
    table: Table, columns: ColumnPlan, owners: Owners, country: str
) -> tuple[list[Draft], list[RowProblem]]:
    """Every row's values and problems; pure, so it runs in a worker thread."""
    problems: list[RowProblem] = []
    drafts: list[Draft] = []

    def owner(cell: Cell) -> uuid.UUID | None:
        written = cells.text(cell)
        return owners.find(written) if written else None

    for row in table.rows:
        reader = RowReader(row, columns, problems)
        parts = [
            reader.read(part, one(cells.text), "") for part in ("last_name", "name", "middle_name")
        ]
        name = " ".join(part for part in parts if part)
        if not name and any(reader.given(part) for part in ("last_name", "name", "middle_name")):
            reader.problem("name", "empty: every contact needs a name")
        elif len(name) > NAME_LENGTH:
            reader.problem("name", f"at most {NAME_LENGTH} characters (this one has {len(name)})")
        values = ContactValues(
            name=name,
            phones=reader.read("phones", lambda found: cells.phones(found, country), []),
            emails=reader.read("emails", cells.emails, []),
            category=reader.read("category", one(cells.category), "client"),
            owner_user_id=reader.read("owner", one(owner), None),
            vip=reader.read("vip", one(cells.yes_no), False),
            source_label=reader.read(
                "source_label", one(lambda cell: cells.bounded(cell, LABEL_LENGTH)), ""
            ),
        )
        contact_id = reader.read("id", one(cells.identifier), None)
        company = reader.read("company", one(lambda cell: cells.bounded(cell, NAME_LENGTH)), "")
        custom = custom_cells(reader, columns)
        drafts.append(Draft(row.line, reader.ok, contact_id, values, company, custom))
    return drafts, problems


class ContactImport(Importer[ContactPreview]):
    vocabulary = CONTACTS
    tables = (CompanyRow, ContactRow, ContactPhoneRow)

    def __init__(
        self,
        session: AsyncSession,
        caller: Caller,
        owners: Owners,
        country: str,
        options: ImportOptions,
    ) -> None:
        super().__init__(session, caller, owners, country, options)
        self.decisions: list[Decision] = []
        self.new_companies: dict[str, tuple[uuid.UUID, str]] = {}  # name key -> id, name
        self.attributes: frozenset[str] = frozenset()

    # --- plan -----------------------------------------------------------------------------

    async def plan(self, table: Table, columns: ColumnPlan) -> Summary[ContactPreview]:
        drafts, problems = await asyncio.to_thread(
            read_rows, table, columns, self.owners, self.country
        )
        for problem in problems:
            self.problems.add(problem.row, problem.field, problem.message)
        present = columns.present
        self.attributes = frozenset(_ATTRIBUTES[name] for name in present if name in _ATTRIBUTES)
        self._check_repeats(drafts)
        await plan_with_values(self.session)

        holders = await self._phone_holders([phone for d in drafts for phone in d.values.phones])
        named = {d.id for d in drafts if d.id is not None}
        existing = await self._contacts(named | set(holders.values()))
        companies = await self._companies()

        summary = Summary[ContactPreview](table, self.problems)
        updating: dict[uuid.UUID, int] = {}  # an existing contact -> the row updating it
        for draft in drafts:
            decision = self._decide(draft, holders, existing, companies, updating)
            if decision is None or not draft.ok or draft.line in self.problems.rows:
                continue
            self.decisions.append(decision)
            summary.counts[decision.action] += 1
            if len(summary.sample) < SAMPLE_SIZE:
                summary.sample.append(_preview(decision))
        summary.new_companies = [name for _, name in self.new_companies.values()]
        return summary

    def _check_repeats(self, drafts: Sequence[Draft]) -> None:
        """A phone or an id twice in the file: the later row is the problem."""
        phones: dict[str, int] = {}
        ids: dict[uuid.UUID, int] = {}
        for draft in drafts:
            for phone in draft.values.phones:
                first = phones.setdefault(phone, draft.line)
                if first != draft.line:
                    self.problems.add(draft.line, "phones", f"{phone} is also on row {first}")
            if draft.id is not None:
                first = ids.setdefault(draft.id, draft.line)
                if first != draft.line:
                    self.problems.add(draft.line, "id", f"the same contact is on row {first}")

    def _decide(
        self,
        draft: Draft,
        holders: dict[str, uuid.UUID],
        existing: dict[uuid.UUID, Existing],
        companies: CompanyIndex,
        updating: dict[uuid.UUID, int],
    ) -> Decision | None:
        line = draft.line
        matches = {holders[phone] for phone in draft.values.phones if phone in holders}
        if draft.id is not None:
            if draft.id not in existing:
                self.problems.add(
                    line, "id", "no contact of yours has this id (empty it to add a new contact)"
                )
                return None
            matches.add(draft.id)
        found: Existing | None = None
        action: Action = "create"
        if matches:
            if len(matches) > 1 and self.options.on_duplicate is not OnDuplicate.SKIP:
                names = ", ".join(sorted(repr(existing[match].values.name) for match in matches))
                self.problems.add(
                    line, "phones", f"the row is several of your contacts at once: {names}"
                )
                return None
            found = existing[min(matches)]
            taken = next((p for p in draft.values.phones if holders.get(p) == found.id), None)
            what = f"{taken} already belongs to" if taken else "this id is"
            decided = self.duplicate(
                line, "phones" if taken else "id", f"{what} {found.values.name!r} ({found.id})"
            )
            if decided is None:
                return None
            action = decided
            if action == "update":
                first = updating.setdefault(found.id, line)
                if first != line:
                    self.problems.add(
                        line, "phones", f"row {first} also updates {found.values.name!r}"
                    )
                    return None
        if action == "skip" and found is not None:
            # Left as it is: its company is not looked for (nor made, for a new name).
            current = found.values.company_id
            name = companies.names.get(current) if current is not None else None
            return Decision(line, "skip", found.values, found, name)
        company_id, company_name = self._company(draft, found, companies)
        values = draft.values if found is None else self._merged(draft, found)
        values = replace(values, company_id=company_id)
        if found is None:
            values.custom = {key: value for key, value in draft.custom.items() if value is not None}
        elif values == found.values:
            action = "unchanged"
        return Decision(line, action, values, found, company_name)

    def _merged(self, draft: Draft, found: Existing) -> ContactValues:
        values = replace(found.values)
        for attribute in self.attributes - {"company_id"}:
            setattr(values, attribute, getattr(draft.values, attribute))
        values.custom = merged_custom(draft.line, found.values.custom, draft.custom, self.problems)
        return values

    def _company(
        self,
        draft: Draft,
        found: Existing | None,
        companies: CompanyIndex,
    ) -> tuple[uuid.UUID | None, str | None]:
        """The company the row names: the tenant's of that name, or a new one."""
        current = found.values.company_id if found is not None else None
        if "company_id" not in self.attributes:
            return current, companies.names.get(current) if current is not None else None
        if not draft.company:
            return None, None
        key = name_key(draft.company)
        candidates = companies.by_key.get(key, [])
        # Two companies of one name: the one the contact already works for is meant.
        candidates = [c for c in candidates if c[0] == current] or candidates
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            self.problems.add(
                draft.line,
                "company",
                f"{len(candidates)} of your companies are named {draft.company!r}; "
                "rename one of them first",
            )
            return None, None
        if key in self.new_companies:
            return None, self.new_companies[key][1]
        if not self.options.create_companies:
            self.problems.add(
                draft.line,
                "company",
                f"no company named {draft.company!r} (create_companies=true creates it)",
            )
            return None, None
        self.new_companies[key] = (uuid.uuid4(), draft.company)
        return None, draft.company

    # --- batched reads ----------------------------------------------------------------------

    async def _phone_holders(self, phones: list[str]) -> dict[str, uuid.UUID]:
        holders: dict[str, uuid.UUID] = {}
        for chunk in chunks(sorted(set(phones))):
            rows = await self.session.execute(
                select(ContactPhoneRow.phone, ContactPhoneRow.contact_id).where(
                    ContactPhoneRow.tenant_id == self.tenant, ContactPhoneRow.phone.in_(chunk)
                )
            )
            holders.update({phone: contact_id for phone, contact_id in rows})
        return holders

    async def _contacts(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Existing]:
        found: dict[uuid.UUID, Existing] = {}
        # Columns, not ORM objects: a 100,000-row update must not fill the session.
        contacts = Contacts(self.session, self.tenant)
        for chunk in chunks(sorted(ids)):
            rows = await self.session.execute(
                contacts.scoped().with_only_columns(*_COLUMNS).where(ContactRow.id.in_(chunk))
            )
            for row in rows:
                found[row.id] = Existing(
                    row.id,
                    ContactValues(
                        name=row.name,
                        emails=list(row.emails),
                        company_id=row.company_id,
                        category=row.category,
                        owner_user_id=row.owner_user_id,
                        vip=row.vip,
                        source_label=row.source_label,
                        custom=dict(row.custom),
                    ),
                )
        for chunk in chunks(sorted(found)):
            rows = await self.session.execute(
                select(ContactPhoneRow.contact_id, ContactPhoneRow.phone)
                .where(
                    ContactPhoneRow.tenant_id == self.tenant,
                    ContactPhoneRow.contact_id.in_(chunk),
                )
                .order_by(ContactPhoneRow.contact_id, ContactPhoneRow.position)
            )
            for contact_id, phone in rows:
                found[contact_id].values.phones.append(phone)
        return found

    async def _companies(self) -> CompanyIndex:
        """The tenant's companies: one read (names are matched as people write them, which
        SQL's ``lower()`` cannot do for Cyrillic on SQLite)."""
        companies = CompanyIndex()
        rows = await self.session.execute(
            Companies(self.session, self.tenant)
            .scoped()
            .with_only_columns(CompanyRow.id, CompanyRow.name)
        )
        for company_id, name in rows:
            companies.add(company_id, name)
        return companies

    # --- write ------------------------------------------------------------------------------

    async def write(self) -> Written:
        now = utcnow()
        new_company_ids = {key: company_id for key, (company_id, _) in self.new_companies.items()}
        await insert_many(
            self.session,
            CompanyRow,
            [
                {
                    "id": company_id,
                    "tenant_id": self.tenant,
                    "revision": 1,
                    "created_at": now,
                    "updated_at": now,
                    "name": name,
                    "phones": [],
                    "emails": [],
                    "website": "",
                    "address": "",
                    "tax_id": "",
                    "category": "client",
                    "owner_user_id": None,
                    "custom": {},
                }
                for company_id, name in self.new_companies.values()
            ],
        )
        created: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        phones: list[dict[str, Any]] = []
        rephoned: list[uuid.UUID] = []
        for decision in self.decisions:
            values = decision.values
            if values.company_id is None and decision.company_name is not None:
                values.company_id = new_company_ids[name_key(decision.company_name)]
            region, region_name = region_of_phones(values.phones)
            if decision.action == "create":
                contact_id = uuid.uuid4()
                created.append(
                    {
                        "id": contact_id,
                        "tenant_id": self.tenant,
                        "revision": 1,
                        "created_at": now,
                        "updated_at": now,
                        "created_by": self.caller.user_id,
                        **_columns(values),
                        "region": region,
                        "region_name": region_name,
                    }
                )
            elif decision.action == "update" and decision.existing is not None:
                contact_id = decision.existing.id
                changed.append(
                    {
                        "id": contact_id,
                        "updated_at": now,
                        **_columns(values),
                        "region": region,
                        "region_name": region_name,
                    }
                )
                if values.phones == decision.existing.values.phones:
                    continue
                rephoned.append(contact_id)
            else:
                continue
            phones += [
                {"tenant_id": self.tenant, "phone": phone, "contact_id": contact_id, "position": i}
                for i, phone in enumerate(values.phones)
            ]
        await insert_many(self.session, ContactRow, created)
        if changed:
            await update_many(
                self.session, ContactRow, self.tenant, [k for k in changed[0] if k != "id"], changed
            )
        for chunk in chunks(rephoned):
            await self.session.execute(
                delete(ContactPhoneRow).where(
                    ContactPhoneRow.tenant_id == self.tenant, ContactPhoneRow.contact_id.in_(chunk)
                )
            )
        await insert_many(self.session, ContactPhoneRow, phones)
        return Written(len(created), len(changed), len(self.new_companies))


def _columns(values: ContactValues) -> dict[str, Any]:
    """The contact's own columns (its phones are rows of their own)."""
    return {
        "name": values.name,
        "emails": values.emails,
        "company_id": values.company_id,
        "category": values.category,
        "owner_user_id": values.owner_user_id,
        "vip": values.vip,
        "source_label": values.source_label,
        "custom": values.custom,
    }


def _preview(decision: Decision) -> ContactPreview:
    values = decision.values
    region, region_name = region_of_phones(values.phones)
    return ContactPreview(
        row=decision.line,
        action=decision.action,
        id=decision.existing.id if decision.existing is not None else None,
        name=values.name,
        phones=values.phones,
        emails=values.emails,
        company=decision.company_name,
        company_id=values.company_id,
        category=values.category,
        owner_user_id=values.owner_user_id,
        vip=values.vip,
        source_label=values.source_label,
        custom=values.custom,
        region=region,
        region_name=region_name,
    )

"""Importing companies.

A row is a company the CRM already has when its ``id`` column names one; else when its
tax id (ИНН) is one's; else when its name is one's (as people write it: case, ё and
quotes do not matter) among companies without a tax id — so a file may add the tax ids
of companies kept by name so far. ``on_duplicate`` decides what such a row does; one
company twice in the file, or a name several companies share, is a problem of the row.

What an import of N rows costs, whatever N: reading the file and every row's values in
a worker thread; one read of the tenant's directory (owners); one read of the tenant's
companies; one ``executemany`` of new companies and one of changed ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.db.base import utcnow

from ..companies.models import CompanyRow
from ..companies.repository import Companies
from ..fields import CustomValue
from ..identity import Caller
from . import cells
from .columns import COMPANIES, ColumnPlan
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
from .schemas import SAMPLE_SIZE, Action, CompanyPreview, RowProblem
from .store import insert_many, name_key, plan_with_values, update_many
from .table import Cell, Table

# The columns of crm_companies.
NAME_LENGTH = 200
WEBSITE_LENGTH = 200
ADDRESS_LENGTH = 500
TAX_ID_LENGTH = 20

# The file's fields -> the company's attribute they set.
_ATTRIBUTES = {
    "name": "name",
    "phones": "phones",
    "emails": "emails",
    "website": "website",
    "address": "address",
    "tax_id": "tax_id",
    "category": "category",
    "owner": "owner_user_id",
}


@dataclass(slots=True)
class CompanyValues:
    """A company's importable values; the defaults are a new company's."""

    name: str = ""
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    website: str = ""
    address: str = ""
    tax_id: str = ""
    category: str = "client"
    owner_user_id: uuid.UUID | None = None
    custom: dict[str, CustomValue] = field(default_factory=dict)


@dataclass(slots=True)
class Draft:
    line: int
    ok: bool
    id: uuid.UUID | None
    values: CompanyValues
    custom: dict[str, CustomValue]  # the custom columns; None: an empty cell


@dataclass(slots=True)
class Existing:
    id: uuid.UUID
    values: CompanyValues


@dataclass(slots=True)
class Decision:
    line: int
    action: Action
    values: CompanyValues
    existing: Existing | None


@dataclass
class CompanyIndex:
    by_id: dict[uuid.UUID, Existing] = field(default_factory=dict)
    by_tax_id: dict[str, list[Existing]] = field(default_factory=dict)
    # Companies without a tax id, by name: a company with one is told apart by it.
    by_name: dict[str, list[Existing]] = field(default_factory=dict)

    def add(self, company: Existing) -> None:
        self.by_id[company.id] = company
        if company.values.tax_id:
            self.by_tax_id.setdefault(company.values.tax_id, []).append(company)
        else:
            self.by_name.setdefault(name_key(company.values.name), []).append(company)


def _identity(draft: Draft) -> tuple[str, str]:
    """What tells the row's company apart in the file: its id, tax id or name."""
    if draft.id is not None:
        return "id", str(draft.id)
    if draft.values.tax_id:
        return "tax_id", draft.values.tax_id
    return "name", name_key(draft.values.name)


def read_rows(
    table: Table, columns: ColumnPlan, owners: Owners, country: str
) -> tuple[list[Draft], list[RowProblem]]:
    """Every row's values and problems; pure, so it runs in a worker thread."""
    problems: list[RowProblem] = []
    drafts: list[Draft] = []

    def owner(cell: Cell) -> uuid.UUID | None:
        written = cells.text(cell)
        return owners.find(written) if written else None

    def limited(length: int) -> Callable[[Sequence[Cell]], str]:
        return one(lambda cell: cells.bounded(cell, length))

    for row in table.rows:
        reader = RowReader(row, columns, problems)
        name = reader.read("name", limited(NAME_LENGTH), "")
        if not name and reader.given("name"):
            reader.problem("name", "empty: every company needs a name")
        values = CompanyValues(
            name=name,
            phones=reader.read("phones", lambda found: cells.phones(found, country), []),
            emails=reader.read("emails", cells.emails, []),
            website=reader.read("website", limited(WEBSITE_LENGTH), ""),
            address=reader.read("address", limited(ADDRESS_LENGTH), ""),
            tax_id=reader.read("tax_id", limited(TAX_ID_LENGTH), ""),
            category=reader.read("category", one(cells.category), "client"),
            owner_user_id=reader.read("owner", one(owner), None),
        )
        company_id = reader.read("id", one(cells.identifier), None)
        custom = custom_cells(reader, columns)
        drafts.append(Draft(row.line, reader.ok, company_id, values, custom))
    return drafts, problems


class CompanyImport(Importer[CompanyPreview]):
    vocabulary = COMPANIES
    tables = (CompanyRow,)

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
        self.attributes: frozenset[str] = frozenset()

    async def plan(self, table: Table, columns: ColumnPlan) -> Summary[CompanyPreview]:
        drafts, problems = await asyncio.to_thread(
            read_rows, table, columns, self.owners, self.country
        )
        for problem in problems:
            self.problems.add(problem.row, problem.field, problem.message)
        self.attributes = frozenset(
            _ATTRIBUTES[name] for name in columns.present if name in _ATTRIBUTES
        )
        self._check_repeats(drafts)
        await plan_with_values(self.session)
        companies = await self._companies()
        summary = Summary[CompanyPreview](table, self.problems)
        updating: dict[uuid.UUID, int] = {}
        for draft in drafts:
            decision = self._decide(draft, companies, updating)
            if decision is None or not draft.ok or draft.line in self.problems.rows:
                continue
            self.decisions.append(decision)
            summary.counts[decision.action] += 1
            if len(summary.sample) < SAMPLE_SIZE:
                summary.sample.append(_preview(decision))
        return summary

    def _check_repeats(self, drafts: Sequence[Draft]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for draft in drafts:
            kind, key = _identity(draft)
            if not key:
                continue
            first = seen.setdefault((kind, key), draft.line)
            if first != draft.line:
                self.problems.add(draft.line, kind, f"the same company is on row {first}")

    def _match(self, draft: Draft, companies: CompanyIndex) -> Existing | None:
        """The company the row is, None for a new one; a problem when it cannot be told."""
        if draft.id is not None:
            found = companies.by_id.get(draft.id)
            if found is None:
                self.problems.add(
                    draft.line, "id", "no company of yours has this id (empty it to add one)"
                )
            return found
        field = "tax_id"
        candidates = companies.by_tax_id.get(draft.values.tax_id, []) if draft.values.tax_id else []
        if not candidates:
            field = "name"
            candidates = companies.by_name.get(name_key(draft.values.name), [])
        if len(candidates) > 1:
            self.problems.add(
                draft.line,
                field,
                f"{len(candidates)} of your companies have this {field}: give the id column",
            )
            return None
        return candidates[0] if candidates else None

    def _decide(
        self, draft: Draft, companies: CompanyIndex, updating: dict[uuid.UUID, int]
    ) -> Decision | None:
        line = draft.line
        problems_before = len(self.problems.items)
        found = self._match(draft, companies)
        if len(self.problems.items) > problems_before:
            return None
        if found is None:
            values = replace(
                draft.values,
                custom={key: value for key, value in draft.custom.items() if value is not None},
            )
            return Decision(line, "create", values, None)
        action = self.duplicate(
            line, "name", f"the company {found.values.name!r} ({found.id}) exists"
        )
        if action is None:
            return None
        if action == "skip":
            return Decision(line, "skip", found.values, found)
        first = updating.setdefault(found.id, line)
        if first != line:
            self.problems.add(line, "name", f"row {first} also updates {found.values.name!r}")
            return None
        values = replace(found.values)
        for attribute in self.attributes:
            setattr(values, attribute, getattr(draft.values, attribute))
        values.custom = merged_custom(line, found.values.custom, draft.custom, self.problems)
        return Decision(line, "unchanged" if values == found.values else "update", values, found)

    async def _companies(self) -> CompanyIndex:
        index = CompanyIndex()
        # Columns, not ORM objects: the session need not track every company.
        rows = await self.session.execute(
            Companies(self.session, self.tenant)
            .scoped()
            .with_only_columns(
                CompanyRow.id,
                CompanyRow.name,
                CompanyRow.phones,
                CompanyRow.emails,
                CompanyRow.website,
                CompanyRow.address,
                CompanyRow.tax_id,
                CompanyRow.category,
                CompanyRow.owner_user_id,
                CompanyRow.custom,
            )
        )
        for row in rows:
            index.add(
                Existing(
                    row.id,
                    CompanyValues(
                        name=row.name,
                        phones=list(row.phones),
                        emails=list(row.emails),
                        website=row.website,
                        address=row.address,
                        tax_id=row.tax_id,
                        category=row.category,
                        owner_user_id=row.owner_user_id,
                        custom=dict(row.custom),
                    ),
                )
            )
        return index

    async def write(self) -> Written:
        now = utcnow()
        created: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for decision in self.decisions:
            if decision.action == "create":
                created.append(
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": self.tenant,
                        "revision": 1,
                        "created_at": now,
                        "updated_at": now,
                        **_columns(decision.values),
                    }
                )
            elif decision.action == "update" and decision.existing is not None:
                changed.append(
                    {"id": decision.existing.id, "updated_at": now, **_columns(decision.values)}
                )
        await insert_many(self.session, CompanyRow, created)
        if changed:
            await update_many(
                self.session, CompanyRow, self.tenant, [k for k in changed[0] if k != "id"], changed
            )
        return Written(len(created), len(changed), 0)


def _columns(values: CompanyValues) -> dict[str, Any]:
    return {
        "name": values.name,
        "phones": values.phones,
        "emails": values.emails,
        "website": values.website,
        "address": values.address,
        "tax_id": values.tax_id,
        "category": values.category,
        "owner_user_id": values.owner_user_id,
        "custom": values.custom,
    }


def _preview(decision: Decision) -> CompanyPreview:
    values = decision.values
    return CompanyPreview(
        row=decision.line,
        action=decision.action,
        id=decision.existing.id if decision.existing is not None else None,
        name=values.name,
        phones=values.phones,
        emails=values.emails,
        website=values.website,
        address=values.address,
        tax_id=values.tax_id,
        category=values.category,
        owner_user_id=values.owner_user_id,
        custom=values.custom,
    )

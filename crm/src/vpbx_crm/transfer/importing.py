"""The flow every import follows, whatever it imports.

1. read the file into rows (``table``; in a worker thread);
2. decide which column gives which field (``columns``);
3. ``Importer.plan``: read and check every row, find the records the CRM already has
   (batched reads), decide each row's action and collect every problem;
4. a dry run answers with the plan; otherwise any problem refuses the whole file (422,
   nothing written), and ``Importer.write`` carries the plan out in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.base import Base
from ..fields import CustomFields, CustomValue
from ..identity import Caller
from . import cells
from .cells import CellError
from .columns import CUSTOM_PREFIX, ColumnPlan, Vocabulary, plan_columns
from .errors import ImportRaced, ImportRejected
from .owners import Owners
from .schemas import (
    MAX_LISTED_ERRORS,
    Action,
    FileFacts,
    ImportPreview,
    ImportResult,
    OnDuplicate,
    RowProblem,
)
from .store import analyze
from .table import Cell, SourceRow, Table, read_table

logger = logging.getLogger(__name__)

PreviewT = TypeVar("PreviewT", bound=BaseModel)

# An import this large changes the tables' statistics enough to refresh them at once.
ANALYZE_AFTER_ROWS = 1000


@dataclass(frozen=True)
class ImportOptions:
    on_duplicate: OnDuplicate = OnDuplicate.ERROR
    create_companies: bool = False  # contacts only: a company named but not found is made
    mapping: dict[str, str | None] = field(default_factory=dict)


class Problems:
    """Every problem found, in the order found; ``rows``: the lines with any (the
    header's included)."""

    def __init__(self) -> None:
        self.items: list[RowProblem] = []
        self.rows: set[int] = set()

    def add(self, row: int, field: str, message: str) -> None:
        self.items.append(RowProblem(row=row, field=field, message=message))
        self.rows.add(row)

    def __bool__(self) -> bool:
        return bool(self.items)

    def listed(self) -> list[RowProblem]:
        return sorted(self.items, key=lambda problem: problem.row)[:MAX_LISTED_ERRORS]


@dataclass
class Summary(Generic[PreviewT]):
    table: Table
    problems: Problems
    sample: list[PreviewT] = field(default_factory=list)
    counts: dict[Action, int] = field(
        default_factory=lambda: {"create": 0, "update": 0, "skip": 0, "unchanged": 0}
    )
    new_companies: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.table.rows)

    @property
    def valid(self) -> int:
        """Data rows without a problem (a problem of the header is none of theirs)."""
        return self.rows - len(self.problems.rows - {self.table.header_line})


@dataclass(frozen=True)
class Written:
    created: int
    updated: int
    companies_created: int


class Importer(ABC, Generic[PreviewT]):
    """One import of one file by one caller; ``plan`` then (unless a dry run) ``write``."""

    vocabulary: ClassVar[Vocabulary]
    tables: ClassVar[tuple[type[Base], ...]]  # what ``write`` fills

    def __init__(
        self,
        session: AsyncSession,
        caller: Caller,
        owners: Owners,
        country: str,
        options: ImportOptions,
    ) -> None:
        self.session = session
        self.caller = caller
        self.tenant = caller.tenant
        self.owners = owners
        self.country = country
        self.options = options
        self.problems = Problems()

    @abstractmethod
    async def plan(self, table: Table, columns: ColumnPlan) -> Summary[PreviewT]:
        """Every row checked and its action decided; nothing written."""

    @abstractmethod
    async def write(self) -> Written:
        """The plan carried out, in the session's transaction (committed by the caller)."""

    def duplicate(self, row: int, field: str, message: str) -> Action | None:
        """What ``on_duplicate`` makes of a row that is a record the CRM has."""
        mode = self.options.on_duplicate
        if mode is OnDuplicate.ERROR:
            self.problems.add(
                row, field, f"{message} (on_duplicate=skip or update imports such rows)"
            )
            return None
        return "skip" if mode is OnDuplicate.SKIP else "update"


async def run_import(
    importer: Importer[PreviewT], data: bytes, dry_run: bool
) -> ImportPreview[PreviewT] | ImportResult:
    # Decoding and parsing a large workbook takes seconds of CPU: off the event loop.
    table = await asyncio.to_thread(read_table, data)
    columns = plan_columns(
        importer.vocabulary, table.header, table.header_line, table.rows, importer.options.mapping
    )
    for problem in columns.problems:
        importer.problems.add(problem.row, problem.field, problem.message)
    summary = await importer.plan(table, columns)
    if dry_run:
        return ImportPreview[PreviewT](
            rows=summary.rows,
            valid=summary.valid,
            error_count=len(importer.problems.items),
            errors=importer.problems.listed(),
            columns=columns.report(),
            sample=summary.sample,
            would_create=summary.counts["create"],
            would_update=summary.counts["update"],
            would_skip=summary.counts["skip"],
            would_leave_unchanged=summary.counts["unchanged"],
            new_companies=summary.new_companies,
            file=FileFacts(format=table.format, encoding=table.encoding, delimiter=table.delimiter),
        )
    if importer.problems:
        raise ImportRejected(
            summary.rows,
            summary.valid,
            importer.problems.listed(),
            len(importer.problems.items),
        )
    try:
        written = await importer.write()
        await importer.session.commit()
    except IntegrityError as exc:
        # Checked a moment ago; another request took one of the file's phones in between.
        await importer.session.rollback()
        raise ImportRaced() from exc
    if written.created + written.updated >= ANALYZE_AFTER_ROWS:
        await analyze(importer.session, importer.tables)
    logger.info(
        "tenant %s imported %s: %d created, %d updated, %d companies created",
        importer.tenant,
        importer.vocabulary.what,
        written.created,
        written.updated,
        written.companies_created,
    )
    return ImportResult(
        created=written.created,
        updated=written.updated,
        skipped=summary.counts["skip"],
        unchanged=summary.counts["unchanged"],
        companies_created=written.companies_created,
        ignored_columns=columns.ignored(),
    )


T = TypeVar("T")


class RowReader:
    """One data row's fields, each read by its parser; a bad value becomes a problem of
    the row (and the field's default), so one pass finds every problem of the row."""

    def __init__(self, row: SourceRow, columns: ColumnPlan, problems: list[RowProblem]) -> None:
        self.line = row.line
        self.cells = columns.values(row)
        self.problems = problems
        self.ok = True

    def given(self, field: str) -> bool:
        return field in self.cells

    def read(self, field: str, parse: Callable[[Sequence[Cell]], T], default: T) -> T:
        cells = self.cells.get(field)
        if cells is None:
            return default
        try:
            return parse(cells)
        except CellError as exc:
            self.problem(field, str(exc))
            return default

    def problem(self, field: str, message: str) -> None:
        self.problems.append(RowProblem(row=self.line, field=field, message=message))
        self.ok = False


def one(parse: Callable[[Cell], T]) -> Callable[[Sequence[Cell]], T]:
    """A parser of a field one column gives (a second column is a problem of the header)."""
    return lambda cells: parse(cells[0])


def custom_cells(reader: RowReader, columns: ColumnPlan) -> dict[str, CustomValue]:
    """The row's ``custom.<key>`` columns; None for an empty cell (it removes the key)."""
    return {
        key: reader.read(CUSTOM_PREFIX + key, one(cells.custom), None)
        for key in columns.custom_keys
    }


def merged_custom(
    reader_line: int,
    current: dict[str, CustomValue],
    given: dict[str, CustomValue],
    problems: Problems,
) -> dict[str, CustomValue]:
    """The custom fields after the file's columns: a value replaces (in the type of the
    value it replaces), an empty cell removes; keys the file has no column for stay."""
    merged = dict(current)
    for key, value in given.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = cells.like(value, current.get(key))
    try:
        return _CUSTOM.validate_python(merged)
    except ValidationError as exc:
        problems.add(reader_line, "custom", "; ".join(error["msg"] for error in exc.errors()))
        return current


_CUSTOM: TypeAdapter[dict[str, CustomValue]] = TypeAdapter(CustomFields)

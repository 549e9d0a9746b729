"""Bodies of the import and export endpoints."""

from __future__ import annotations

import enum
import uuid
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

ItemT = TypeVar("ItemT", bound=BaseModel)

# Listing every problem of a 100,000-row file would make an answer of megabytes nobody reads;
# the count says how many there are in all.
MAX_LISTED_ERRORS = 1000
SAMPLE_SIZE = 10


class OnDuplicate(enum.StrEnum):
    """What a row does when it is somebody the CRM already has."""

    ERROR = "error"  # a problem of the row: nothing is imported
    SKIP = "skip"  # the CRM's record stays as it is
    UPDATE = "update"  # the file's columns replace the record's values


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


class CsvDelimiter(enum.StrEnum):
    COMMA = "comma"
    # What Excel in a Russian (and most European) locale expects when it opens a CSV file.
    SEMICOLON = "semicolon"

    @property
    def char(self) -> str:
        return "," if self is CsvDelimiter.COMMA else ";"


Action = Literal["create", "update", "skip", "unchanged"]


class RowProblem(BaseModel):
    row: int = Field(description="the line in the file (1-based, the header row counted)")
    field: str = Field(description="the field (or, for a header problem, the column)")
    message: str


class FileFacts(BaseModel):
    format: Literal["csv", "xlsx"]
    encoding: str | None = Field(description="CSV only: utf-8, utf-8-sig (BOM), cp1251, ...")
    delimiter: str | None = Field(description="CSV only: the separator found in the header")


class ContactPreview(BaseModel):
    """A contact as the import would leave it."""

    row: int
    action: Action
    id: uuid.UUID | None = Field(description="the existing contact (update, skip, unchanged)")
    name: str
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    company: str | None = Field(description="the company's name")
    company_id: uuid.UUID | None = Field(description="null for a company the import creates")
    category: str
    owner_user_id: uuid.UUID | None
    vip: bool
    source_label: str
    custom: dict[str, str | int | float | bool | None]
    region: str
    region_name: str


class CompanyPreview(BaseModel):
    """A company as the import would leave it."""

    row: int
    action: Action
    id: uuid.UUID | None = Field(description="the existing company (update, skip, unchanged)")
    name: str
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    website: str
    address: str
    tax_id: str
    category: str
    owner_user_id: uuid.UUID | None
    custom: dict[str, str | int | float | bool | None]


class ImportPreview(BaseModel, Generic[ItemT]):
    """What an import of the file would do (``dry_run=true``); nothing is written."""

    rows: int = Field(description="data rows in the file (the header and empty rows not counted)")
    valid: int = Field(description="rows without a problem")
    error_count: int = Field(description="all problems found, listed in `errors` or not")
    errors: list[RowProblem] = Field(description="the problems, by row (at most 1000)")
    columns: dict[str, str | None] = Field(
        description="each column of the file -> the field it gives; null: not imported"
    )
    sample: list[ItemT] = Field(description="the first 10 valid rows as they would be stored")
    would_create: int
    would_update: int
    would_skip: int
    would_leave_unchanged: int = Field(description="duplicates that already hold these values")
    new_companies: list[str] = Field(description="companies the import would create")
    file: FileFacts


class ImportResult(BaseModel):
    created: int
    updated: int
    skipped: int = Field(description="duplicates left as they were (on_duplicate=skip)")
    unchanged: int = Field(description="duplicates that already held the file's values")
    companies_created: int
    ignored_columns: list[str] = Field(description="columns of the file that were not imported")

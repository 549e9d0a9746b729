"""Report exports: a report's JSON document as tables, written as CSV or XLSX.

Which format: ``?format=json|csv|xlsx`` when given, else the first of ``text/csv`` and the
XLSX media type the Accept header names (with q > 0), else JSON.

Tables: a document with ``rows`` (a list of objects) is one table of those rows, then its
``totals`` as a last row; the document's other scalar fields are the query's echo, not
exported. A document without ``rows`` (the clients report) is a table of ``figure,value``
pairs: its numbers, nested objects flattened (``by_category.vip``); each of its lists of
objects is a table of its own. Nested objects inside rows are flattened the same way.

CSV (RFC 4180): the first table only, UTF-8 with a byte order mark (Excel then reads UTF-8),
comma-separated, CRLF line ends, a header row, numbers with a '.' decimal point, empty for
null. Comma rather than ';': CSV is for programs (pandas, spreadsheets' import dialog),
while XLSX is what a spreadsheet opens in any locale. A text cell that a spreadsheet would
run as a formula (starting with '=', '@', a tab or CR, or '+'/'-' not followed by a plain
number) is prefixed with an apostrophe; an E.164 number is left as it is.

XLSX: one sheet per table (named after it), a bold header row, numbers as numbers (money
too: the JSON's exact money strings, "1500.00", become numeric cells), text always as text
(never a formula).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet


class ExportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES = {
    ExportFormat.JSON: JSON_MEDIA_TYPE,
    ExportFormat.CSV: CSV_MEDIA_TYPE,
    ExportFormat.XLSX: XLSX_MEDIA_TYPE,
}
_BY_MEDIA_TYPE = {CSV_MEDIA_TYPE: ExportFormat.CSV, XLSX_MEDIA_TYPE: ExportFormat.XLSX}

Value = str | int | float | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]] = field(default_factory=list)


def negotiate(requested: ExportFormat | None, accept: str | None) -> ExportFormat:
    """The format asked for: ``?format=`` first, then the Accept header, else JSON."""
    if requested is not None:
        return requested
    for part in (accept or "").split(","):
        media_type, *parameters = (piece.strip() for piece in part.split(";"))
        chosen = _BY_MEDIA_TYPE.get(media_type.lower())
        if chosen is not None and not any(_refused(p) for p in parameters):
            return chosen
    return ExportFormat.JSON


def _refused(parameter: str) -> bool:
    """``q=0`` (or 0.0...): the client does not want this type."""
    name, _, value = parameter.partition("=")
    if name.strip().lower() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def filename(report: str, first: dt.date, last: dt.date, export: ExportFormat) -> str:
    """``calls-2026-12-01_2026-12-07.xlsx``."""
    return f"{report}-{first.isoformat()}_{last.isoformat()}.{export.value}"


# --- the document as tables ---------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Value]]:
    """(column, cell) pairs: nested objects become dotted columns; a list of scalars one
    cell, joined by ', '; lists of objects are left to tables of their own."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, list | tuple):
        if all(not isinstance(item, Mapping) for item in value):
            yield prefix, ", ".join("" if item is None else str(item) for item in value)
    elif value is None or isinstance(value, str | int | float | Decimal | bool):
        yield prefix, value
    else:
        yield prefix, str(value)


def _typed(column: str, value: Value, decimals: Collection[str]) -> Value:
    """Money comes as text ("1500.00", exact); in a money column it is exported as a number."""
    if isinstance(value, str) and (column in decimals or column.split(".", 1)[0] in decimals):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    return value


def _object_table(
    name: str, objects: Iterable[Mapping[str, Any]], decimals: Collection[str]
) -> Table:
    """Objects as rows; the columns are every key met, in the order first met."""
    flat = [
        {column: _typed(column, value, decimals) for column, value in _flatten("", item)}
        for item in objects
    ]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    names = tuple(columns)
    return Table(name, names, [tuple(row.get(column) for column in names) for row in flat])


def _is_object_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def tables_of(
    report: str, document: Mapping[str, Any], decimals: Collection[str] = ()
) -> list[Table]:
    """The report's document as tables, the main one first (see the module's docstring).

    ``decimals``: the fields holding money as text; exported as numbers (a nested object's
    name covers its fields: ``won_amounts`` covers ``won_amounts.RUB``)."""
    rows = document.get("rows")
    if isinstance(rows, list):
        objects: list[Mapping[str, Any]] = list(rows)
        totals = document.get("totals")
        if isinstance(totals, Mapping):
            objects.append(totals)
        return [_object_table(report, objects, decimals)]
    figures = Table(report, ("figure", "value"))
    others: list[Table] = []
    for key, value in document.items():
        if _is_object_list(value):
            others.append(_object_table(key, value, decimals))
        elif not isinstance(value, list):
            figures.rows.extend(
                (figure, _typed(figure, cell, decimals)) for figure, cell in _flatten(key, value)
            )
    return [figures, *others]


# --- CSV ----------------------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def _csv_cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    if value[:1] in ("=", "@", "\t", "\r") or (
        value[:1] in ("+", "-") and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_csv_cell(column) for column in table.columns])
    writer.writerows([_csv_cell(cell) for cell in row] for row in table.rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


# --- XLSX ---------------------------------------------------------------------------------

_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_BOLD = Font(bold=True)


def _sheet_title(name: str, taken: set[str]) -> str:
    base = _SHEET_NAME_FORBIDDEN.sub("_", name)[:28] or "sheet"
    title, n = base, 1
    while title.lower() in taken:
        n += 1
        title = f"{base}~{n}"
    taken.add(title.lower())
    return title


def _header_cell(sheet: WriteOnlyWorksheet, name: str) -> Cell:
    cell = WriteOnlyCell(sheet, value=name)
    cell.data_type = "s"
    cell.font = _BOLD
    return cell


def _xlsx_value(sheet: WriteOnlyWorksheet, value: Value) -> Cell | str | float | None:
    """A plain value where openpyxl writes it as it is (a cell object costs ten times more);
    text starting with '=' as an explicit text cell, which openpyxl would take for a formula."""
    if isinstance(value, Decimal):
        return float(value)  # XLSX numbers are doubles; money (2 decimals) reads back as written
    if isinstance(value, str) and value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"
        return cell
    return value


def to_xlsx(tables: Sequence[Table]) -> bytes:
    workbook = Workbook(write_only=True)
    taken: set[str] = set()
    for table in tables:
        sheet = workbook.create_sheet(_sheet_title(table.name, taken))
        sheet.append([_header_cell(sheet, column) for column in table.columns])
        for row in table.rows:
            sheet.append([_xlsx_value(sheet, cell) for cell in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()

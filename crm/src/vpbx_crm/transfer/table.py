"""An uploaded file -> a header and rows of cells, whatever program saved it.

CSV comes in UTF-8 (with or without the BOM Excel writes for "CSV UTF-8") or in
Windows-1251 (what Russian Excel writes for plain "CSV"), separated by ``,``, ``;`` (Excel
in a Russian locale) or tabs. Excel workbooks are read from their first sheet, streaming
(openpyxl's read-only mode). Pure functions of the bytes: the router runs them in a worker
thread, since a large workbook takes seconds of CPU.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import openpyxl

from .errors import ImportTooLarge, UnreadableFile

_MB = 1024 * 1024

# What a cell may hold: text from CSV; typed values from a workbook.
Cell = str | int | float | bool | dt.datetime | dt.date | dt.time | None

_XLSX_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (Excel 97-2003), also old .doc
_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 10 * _MB
    max_rows: int = 100_000
    # No contact or company has anywhere near this many fields; more is not a contact list.
    max_columns: int = 200
    # A workbook is a zip: 10 MB of it may unpack to gigabytes of XML (a "zip bomb").
    # 100,000 rows of a dozen columns unpack to some 50 MB.
    max_unpacked_bytes: int = 250 * _MB

    def describe(self) -> str:
        return f"at most {self.max_bytes // _MB} MB and {self.max_rows:,} rows"

    def too_large(self) -> ImportTooLarge:
        return ImportTooLarge(f"the file is larger than {self.max_bytes // _MB} MB")


LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class SourceRow:
    line: int  # 1-based, as the user sees it (the header's line counted)
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Table:
    format: Literal["csv", "xlsx"]
    encoding: str | None
    delimiter: str | None
    header_line: int
    header: list[str]
    rows: list[SourceRow]  # non-empty data rows


def read_table(data: bytes, limits: Limits = LIMITS) -> Table:
    """The file's header and rows; 413 past the limits, 422 for what cannot be read.

    The format is recognised by the content, not by the file's name: browsers and people
    name files freely.
    """
    if len(data) > limits.max_bytes:
        raise limits.too_large()
    if not data.strip():
        raise UnreadableFile("the file is empty")
    if data.startswith(_XLSX_MAGIC):
        return _read_xlsx(data, limits)
    if data.startswith(_OLE_MAGIC):
        raise UnreadableFile(
            "this is an old Excel file (.xls); save it as an Excel workbook (.xlsx) or as CSV"
        )
    return _read_csv(data, limits)


# --- CSV ------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, str]:
    encodings: tuple[str, ...]
    if data.startswith(codecs.BOM_UTF8):
        encodings = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)  # Excel's "Unicode text"
    else:
        # Valid UTF-8 is almost never Windows-1251 text by accident (its Cyrillic letters
        # are lead bytes without the continuation bytes UTF-8 needs), so UTF-8 goes first.
        encodings = ("utf-8", "cp1251")
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue  # the next encoding may read it; none reading it is refused below
    raise UnreadableFile("the text is neither UTF-8 nor Windows-1251; save it as CSV UTF-8")


def _delimiter(text: str) -> str:
    """The separator of the header line: the one it holds most of (``,`` when none)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    try:
        for record in reader:
            yield start, record
            # A quoted cell may span lines: the next record starts after this one's last.
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UnreadableFile(f"line {reader.line_num}: {exc}") from exc


def _read_csv(data: bytes, limits: Limits) -> Table:
    text, encoding = _decode(data)
    if "\x00" in text:
        # No spreadsheet writes NUL into CSV; it is a binary file (or UTF-16 without BOM).
        raise UnreadableFile("the file holds NUL characters: it is not CSV text")
    delimiter = _delimiter(text)
    header_line, header, rows = _rows(_csv_records(text, delimiter), limits)
    return Table("csv", encoding, delimiter, header_line, header, rows)


# --- Excel ------------------------------------------------------------------------------


def _check_workbook(data: bytes, limits: Limits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise UnreadableFile(f"not a readable Excel workbook ({exc})") from exc
    names = {member.filename for member in members}
    if "xl/workbook.xml" not in names:
        raise UnreadableFile("a zip file but not an Excel workbook (.xlsx); save it as .xlsx")
    # zipfile stops reading a member at its declared size, so the declared sizes bound
    # what openpyxl can be made to unpack.
    if sum(member.file_size for member in members) > limits.max_unpacked_bytes:
        raise ImportTooLarge(
            f"the workbook unpacks to more than {limits.max_unpacked_bytes // _MB} MB"
        )


def _xlsx_records(data: bytes, limits: Limits) -> Iterator[tuple[int, Sequence[Cell]]]:
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        # openpyxl fails on a broken workbook with whatever its parsers raise (KeyError,
        # ValueError, XML errors...): all of them mean "cannot read this file".
        raise UnreadableFile(f"not a readable Excel workbook ({exc!r})") from exc
    try:
        if not workbook.worksheets:
            raise UnreadableFile("the workbook has no sheet")
        sheet = workbook.worksheets[0]
        # Read-only sheets yield every row from the first, empty ones included, so the
        # position is the row number Excel shows. A cell past max_columns is not read.
        rows = sheet.iter_rows(max_col=limits.max_columns + 1, values_only=True)
        yield from enumerate(rows, start=1)
    finally:
        workbook.close()


def _read_xlsx(data: bytes, limits: Limits) -> Table:
    _check_workbook(data, limits)
    header_line, header, rows = _rows(_xlsx_records(data, limits), limits)
    return Table("xlsx", None, None, header_line, header, rows)


# --- both -------------------------------------------------------------------------------


def _blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _rows(
    records: Iterable[tuple[int, Sequence[Cell]]], limits: Limits
) -> tuple[int, list[str], list[SourceRow]]:
    """The header (the first non-empty row) and the non-empty rows after it."""
    header_line = 0
    header: list[str] = []
    rows: list[SourceRow] = []
    for line, cells in records:
        if all(_blank(cell) for cell in cells):
            continue
        if not header_line:
            header_line = line
            header = ["" if cell is None else str(cell).strip() for cell in cells]
            while header and not header[-1]:
                header.pop()
            if len(header) > limits.max_columns:
                raise UnreadableFile(
                    f"the header has {len(header)} columns; at most {limits.max_columns}"
                )
            continue
        if len(rows) == limits.max_rows:
            raise ImportTooLarge(
                f"the file has more than {limits.max_rows:,} rows; split it into several files"
            )
        rows.append(SourceRow(line, tuple(cells[: limits.max_columns])))
    if not header_line:
        raise UnreadableFile("the file has no rows")
    return header_line, header, rows

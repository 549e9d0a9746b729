"""Report exports: which format a client gets, and text a spreadsheet would run stays text."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from vpbx_control.reports.export import ExportFormat, negotiate, tables_of, to_csv, to_xlsx


@pytest.mark.parametrize(
    ("requested", "accept", "expected"),
    [
        (None, None, ExportFormat.JSON),
        (None, "*/*", ExportFormat.JSON),
        (None, "text/csv", ExportFormat.CSV),
        (None, "Text/CSV; charset=utf-8", ExportFormat.CSV),
        (None, "application/json, text/csv;q=0.5", ExportFormat.CSV),
        (None, "text/csv;q=0", ExportFormat.JSON),
        (
            None,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ExportFormat.XLSX,
        ),
        (ExportFormat.JSON, "text/csv", ExportFormat.JSON),  # ?format= wins
        (ExportFormat.XLSX, None, ExportFormat.XLSX),
    ],
)
def test_format_negotiation(
    requested: ExportFormat | None, accept: str | None, expected: ExportFormat
) -> None:
    assert negotiate(requested, accept) == expected


HOSTILE = {
    "rows": [
        {"key": '=HYPERLINK("http://x","y")', "total": 1},
        {"key": "+74950000001", "total": 2},
        {"key": "-1+cmd|' /C calc'!A0", "total": 3},
        {"key": "@SUM(1)", "total": 4},
        {"key": "-12.5", "total": 5},
    ]
}


def test_csv_keeps_formulas_as_text_and_numbers_as_they_are() -> None:
    text = to_csv(tables_of("calls", HOSTILE)[0]).decode("utf-8-sig")
    keys = [row["key"] for row in csv.DictReader(io.StringIO(text))]
    assert keys == [
        '\'=HYPERLINK("http://x","y")',
        "+74950000001",
        "'-1+cmd|' /C calc'!A0",
        "'@SUM(1)",
        "-12.5",
    ]


def test_xlsx_text_is_never_a_formula() -> None:
    workbook = openpyxl.load_workbook(io.BytesIO(to_xlsx(tables_of("calls", HOSTILE))))
    cells = [row[0] for row in workbook["calls"].iter_rows(min_row=2)]
    assert [cell.value for cell in cells] == [row["key"] for row in HOSTILE["rows"]]
    assert {cell.data_type for cell in cells} == {"s"}

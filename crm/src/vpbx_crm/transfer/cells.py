"""One cell (or the cells of one field) -> a field's value; a bad one raises ``CellError``.

The rules are the API's (``fields.py``, ``contacts/phones.py``), so an imported contact is
one the API would have accepted.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from vpbx_common.crm import CATEGORY_PATTERN

from ..contacts.phones import normalized_phones
from ..errors import InvalidInput
from ..fields import CustomValue, Email
from .table import Cell

MAX_LISTED = 10  # phones or e-mails of one contact, as the API allows
MAX_CUSTOM_TEXT = 1000

_EMAIL: TypeAdapter[str] = TypeAdapter(Email)
_LIST_SEPARATORS = re.compile(r"[,;\r\n]+")
_EMAIL_SEPARATORS = re.compile(r"[,;\s]+")
# What Excel would run as a formula; exports write such a cell with a leading apostrophe
# (the OWASP advice against CSV injection), which reading takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_TRUE = frozenset({"да", "yes", "1", "true", "y", "д"})
_FALSE = frozenset({"нет", "no", "0", "false", "n", "н"})
CATEGORY_WORDS = {
    "клиент": "client",
    "поставщик": "supplier",
    "партнер": "partner",
    "партнёр": "partner",
    "другое": "other",
    "прочее": "other",
}


class CellError(ValueError):
    """The message says what is wrong with the value, for the row's problem list."""


def text(cell: Cell) -> str:
    """A cell as text: numbers as written (a phone typed as a number has no ``.0``)."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, dt.datetime | dt.date | dt.time):
        return cell.isoformat()
    value = str(cell).strip()
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_STARTS:
        return value[1:]
    return value


def bounded(cell: Cell, max_length: int) -> str:
    value = text(cell)
    if len(value) > max_length:
        raise CellError(f"at most {max_length} characters (this one has {len(value)})")
    return value


def items(cells: Sequence[Cell], separators: re.Pattern[str] = _LIST_SEPARATORS) -> list[str]:
    """Values of a list field: from several columns, several in a cell, or both."""
    found: list[str] = []
    for cell in cells:
        found += [part.strip() for part in separators.split(text(cell)) if part.strip()]
    return found


def phones(cells: Sequence[Cell], country: str) -> list[str]:
    listed = items(cells)
    if len(listed) > MAX_LISTED:
        raise CellError(f"at most {MAX_LISTED} phones (this row has {len(listed)})")
    try:
        return normalized_phones(listed, "phones", country)
    except InvalidInput as exc:
        # The API's own rule and message ("'12': wrong number of digits for its country").
        raise CellError("; ".join(problem.message for problem in exc.details)) from exc


def emails(cells: Sequence[Cell]) -> list[str]:
    listed = items(cells, _EMAIL_SEPARATORS)
    if len(listed) > MAX_LISTED:
        raise CellError(f"at most {MAX_LISTED} e-mails (this row has {len(listed)})")
    for email in listed:
        try:
            _EMAIL.validate_python(email)
        except ValidationError as exc:
            raise CellError(f"{email!r} is not an e-mail address") from exc
    return listed


def yes_no(cell: Cell) -> bool:
    if isinstance(cell, bool):
        return cell
    value = text(cell).casefold()
    if not value or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise CellError(f"{value!r}: write да/нет, yes/no, 1/0 or true/false")


def category(cell: Cell) -> str:
    value = text(cell).casefold()
    if not value:
        return "client"
    value = CATEGORY_WORDS.get(value, value)
    if not CATEGORY_PATTERN.fullmatch(value):
        raise CellError(
            f"{text(cell)!r} is not a category: client, supplier, partner, other "
            "(клиент, поставщик, партнёр, другое) or your own (latin lowercase, digits, -)"
        )
    return value


def identifier(cell: Cell) -> uuid.UUID | None:
    value = text(cell)
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise CellError(f"{value!r} is not an id of this CRM (leave it empty for new)") from exc


def custom(cell: Cell) -> CustomValue:
    """A custom field's value: a workbook's numbers and booleans stay numbers and booleans,
    text (all of CSV) stays text; an empty cell is no value."""
    if cell is None:
        return None
    if isinstance(cell, bool | int):
        return cell
    if isinstance(cell, float):
        return int(cell) if cell.is_integer() else cell
    value = text(cell)
    if len(value) > MAX_CUSTOM_TEXT:
        raise CellError(f"at most {MAX_CUSTOM_TEXT} characters (this one has {len(value)})")
    return value or None


def like(value: CustomValue, existing: object) -> CustomValue:
    """``value`` in the type of the value it replaces, when the text reads as one.

    CSV has text only: without this, exporting and importing a file with
    ``on_duplicate=update`` would turn every number of a custom field into text.
    """
    if not isinstance(value, str):
        return value
    if isinstance(existing, bool):
        lowered = value.casefold()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    elif isinstance(existing, int) and re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    elif isinstance(existing, float):
        try:
            number = float(value.replace(",", "."))
        except ValueError:
            return value  # not a number after all: the text replaces the number
        # "nan" and "inf" read as floats, but JSON (and so the store) has no such numbers.
        return number if math.isfinite(number) else value
    return value

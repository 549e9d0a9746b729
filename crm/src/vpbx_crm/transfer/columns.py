"""Which column of a file gives which field: header names in English or Russian, the
tenant's own ``mapping``, and ``custom.<key>`` columns for the tenant's own fields.

A column nothing claims is reported (``columns`` maps it to null), never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..errors import InvalidInput
from .schemas import RowProblem
from .table import Cell, SourceRow

CUSTOM_PREFIX = "custom."
MAX_CUSTOM_COLUMNS = 50  # a record holds at most 50 custom fields (fields.py)
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SEPARATORS = re.compile(r"[\s_\-.:*()/№#]+")
# "Phone 2", "Телефон3", Google's "Phone 1 - Value": further columns of a list field.
_NUMBERED = re.compile(r"^(.*?)\s*\d*(?:\s+value)?$")


def header_key(header: str) -> str:
    """A header as compared: case, ё, separators and decoration do not matter."""
    key = header.replace("\ufeff", "").casefold().replace("ё", "е")
    return _SEPARATORS.sub(" ", key).strip()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    aliases: tuple[str, ...]
    many: bool = False  # several columns may give it (phones, e-mails)
    # Name parts: several of them make the name ("Фамилия", "Имя", "Отчество").
    part_of: str | None = None


@dataclass(frozen=True)
class Vocabulary:
    what: str  # "contacts", "companies"
    fields: tuple[FieldSpec, ...]
    # Fields a file must give, with how to name their column.
    required: dict[str, str]
    by_alias: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        by_alias: dict[str, str] = {}
        for spec in self.fields:
            for alias in (spec.name, *spec.aliases):
                by_alias[header_key(alias)] = spec.name
        object.__setattr__(self, "by_alias", by_alias)

    def spec(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def match(self, header: str) -> str | None:
        """The field a header names, None when it names none."""
        if header.strip().casefold().startswith(CUSTOM_PREFIX):
            return CUSTOM_PREFIX + header.strip()[len(CUSTOM_PREFIX) :]
        key = header_key(header)
        found = self.by_alias.get(key)
        if found is not None:
            return found
        numbered = _NUMBERED.fullmatch(key)
        if numbered is not None:
            found = self.by_alias.get(numbered.group(1))
            spec = self.spec(found) if found is not None else None
            if spec is not None and spec.many:
                return found
        return None

    def names(self) -> str:
        return ", ".join(spec.name for spec in self.fields)


def _aliases(listed: str) -> tuple[str, ...]:
    return tuple(alias.strip() for alias in listed.split("|"))


_PHONES = FieldSpec(
    "phones",
    _aliases(
        "phone | phone number | telephone | tel | mobile | mobile phone | cell | work phone"
        " | business phone | home phone | other phone | телефон | телефоны | тел | номер"
        " | номер телефона | мобильный | мобильный телефон | телефон мобильный"
        " | рабочий телефон | телефон рабочий | домашний телефон | другой телефон | сотовый"
    ),
    many=True,
)
_EMAILS = FieldSpec(
    "emails",
    _aliases(
        "email | e-mail | e-mail address | email address | mail | почта | электронная почта"
        " | эл почта | емейл | имейл | адрес почты"
    ),
    many=True,
)
_CATEGORY = FieldSpec("category", _aliases("type | категория | тип"))
_OWNER = FieldSpec(
    "owner",
    _aliases(
        "owner_user_id | responsible | manager | responsible manager | assigned to"
        " | ответственный | ответственный менеджер | менеджер | владелец"
    ),
)
_ID = FieldSpec("id", _aliases("crm id"))

CONTACTS = Vocabulary(
    "contacts",
    (
        _ID,
        FieldSpec(
            "name",
            _aliases(
                "full name | contact | contact name | имя | фио | ф и о | полное имя | контакт"
                " | имя контакта"
            ),
        ),
        # Made into one name in the Russian order: Фамилия Имя Отчество.
        FieldSpec("last_name", _aliases("фамилия"), part_of="name"),
        FieldSpec("middle_name", _aliases("отчество"), part_of="name"),
        _PHONES,
        _EMAILS,
        FieldSpec(
            "company",
            _aliases(
                "company name | organization | organisation | компания | организация"
                " | название компании"
            ),
        ),
        _CATEGORY,
        _OWNER,
        FieldSpec("vip", _aliases("вип | vip client | вип клиент")),
        FieldSpec(
            "source_label",
            _aliases("source | ad channel | channel | источник | рекламный канал | канал"),
        ),
    ),
    required={"name": "name, Имя or ФИО"},
)

COMPANIES = Vocabulary(
    "companies",
    (
        _ID,
        FieldSpec(
            "name",
            _aliases(
                "company | company name | organization | organisation | название | наименование"
                " | компания | организация | название компании"
            ),
        ),
        _PHONES,
        _EMAILS,
        FieldSpec("website", _aliases("site | web | url | web site | сайт | веб сайт")),
        FieldSpec("address", _aliases("адрес | юридический адрес | фактический адрес")),
        FieldSpec("tax_id", _aliases("inn | vat | vat id | инн")),
        _CATEGORY,
        _OWNER,
    ),
    required={"name": "name, Название or Компания"},
)


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    label: str  # how the report names it: its header, made unique
    field: str | None


@dataclass
class ColumnPlan:
    columns: list[Column]
    problems: list[RowProblem]  # of the header row: nothing can be imported while any

    def report(self) -> dict[str, str | None]:
        return {column.label: column.field for column in self.columns}

    def ignored(self) -> list[str]:
        return [column.label for column in self.columns if column.field is None]

    @cached_property
    def present(self) -> frozenset[str]:
        """The fields the file gives."""
        return frozenset(column.field for column in self.columns if column.field is not None)

    @cached_property
    def custom_keys(self) -> list[str]:
        return sorted(
            name[len(CUSTOM_PREFIX) :] for name in self.present if name.startswith(CUSTOM_PREFIX)
        )

    @cached_property
    def _given(self) -> list[tuple[int, str]]:
        return [(c.index, c.field) for c in self.columns if c.field is not None]

    def values(self, row: SourceRow) -> dict[str, list[Cell]]:
        """The row's cells by field, in column order."""
        found: dict[str, list[Cell]] = {}
        cells = row.cells
        for index, name in self._given:
            found.setdefault(name, []).append(cells[index] if index < len(cells) else None)
        return found


def parse_mapping(raw: str | None) -> dict[str, str | None]:
    """The ``mapping`` form field: a JSON object, column header -> field (or null)."""
    if raw is None or not raw.strip():
        return {}
    try:
        mapping = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput.at("mapping", f"not JSON: {exc}") from exc
    if not isinstance(mapping, dict) or not all(
        isinstance(value, str | None) for value in mapping.values()
    ):
        raise InvalidInput.at(
            "mapping", 'a JSON object of column -> field, e.g. {"Заказы": "custom.orders"}'
        )
    return mapping


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def plan_columns(
    vocabulary: Vocabulary,
    header: Sequence[str],
    header_line: int,
    rows: Sequence[SourceRow],
    mapping: Mapping[str, str | None],
) -> ColumnPlan:
    problems: list[RowProblem] = []

    def problem(field: str, message: str) -> None:
        problems.append(RowProblem(row=header_line, field=field, message=message))

    mapped = {header_key(name): target for name, target in mapping.items()}
    titles = {header_key(title) for title in header}
    for name, target in mapping.items():
        if header_key(name) not in titles:
            problem("mapping", f"no column {name!r} in the file")
        if target is not None and not (
            vocabulary.spec(target) is not None or target.startswith(CUSTOM_PREFIX)
        ):
            problem(
                "mapping",
                f"{name!r} -> {target!r}: not a field of {vocabulary.what} "
                f"({vocabulary.names()}, custom.<key>)",
            )

    width = max([len(header), *(len(row.cells) for row in rows)])
    columns: list[Column] = []
    labels: set[str] = set()
    for index in range(width):
        title = header[index] if index < len(header) else ""
        if not title and not any(
            index < len(row.cells) and filled(row.cells[index]) for row in rows
        ):
            continue  # an empty column (a trailing separator): nothing to report
        label = title or f"column {_column_letters(index)}"
        while label in labels:
            label = f"{label} ({_column_letters(index)})"
        labels.add(label)
        key = header_key(title)
        target = mapped[key] if key in mapped else vocabulary.match(title) if title else None
        if target is not None and target.startswith(CUSTOM_PREFIX):
            custom_key = target[len(CUSTOM_PREFIX) :]
            if not _CUSTOM_KEY.fullmatch(custom_key):
                problem(
                    label,
                    f"{custom_key!r}: a custom field's name is a lowercase slug "
                    "(a-z, 0-9, _; starting with a letter)",
                )
                target = None
        columns.append(Column(index, label, target))

    claimed: dict[str, list[str]] = {}
    for column in columns:
        if column.field is not None:
            claimed.setdefault(column.field, []).append(column.label)
    for name, labels_of_field in claimed.items():
        spec = vocabulary.spec(name)
        if len(labels_of_field) > 1 and not (spec is not None and spec.many):
            listed = ", ".join(repr(label) for label in labels_of_field)
            problem(name, f"columns {listed} all give the {name}: keep one (or map it)")
    customs = [name for name in claimed if name.startswith(CUSTOM_PREFIX)]
    if len(customs) > MAX_CUSTOM_COLUMNS:
        problem("custom", f"{len(customs)} custom columns; a record has at most 50")
    for required, hint in vocabulary.required.items():
        givers = [required] + [spec.name for spec in vocabulary.fields if spec.part_of == required]
        if not any(giver in claimed for giver in givers):
            problem(required, f"no column gives the {required}: call one {hint}, or map one")
    return ColumnPlan(columns, problems)


def filled(cell: Cell) -> bool:
    return cell is not None and (not isinstance(cell, str) or bool(cell.strip()))

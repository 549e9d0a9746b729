#!/usr/bin/env python3
"""Build the shipped Russian numbering data (``ru_ranges.tsv``) from the register.

vpbx resolves a Russian number's federal subject from its own data file so that
the call path never imports phonenumbers' geocoder and so that mobile (DEF)
numbers, which the geocoder only knows as "Russia", get a region too. The data
comes from the Ministry's register extract ("Выписка из реестра Российской
системы и плана нумерации"): CSV files ``ABC-3xx.csv``, ``ABC-4xx.csv``,
``ABC-8xx.csv`` and ``DEF-9xx.csv`` with the columns
``АВС/ DEF;От;До;Емкость;Оператор;Регион[;Территория ГАР;ИНН]``.

What it writes: sorted, non-overlapping ranges of 10-digit national numbers
(without the country code 7), each with an ISO 3166-2:RU subject code, adjacent
ranges of one subject merged. A range that names no single subject (the whole
country, a federal district, or a region without an ISO 3166-2:RU code) is kept
with the code ``RU``: the number is Russian and allocated, its subject unknown.

Geographic (ABC) codes whose register file is not given are filled from the
numbering plan's zone table below: each geographic zone code belongs to one
subject. Non-geographic 80x codes (toll-free, premium...) are never written.

Usage:
    python scripts/build-ru-numbering.py --def-file DEF-9xx.csv \
        [--abc-file ABC-3xx.csv ...] [--out PATH]

Register names the script cannot place make it stop with the list of them, so a
new spelling in a later register extract is noticed, not silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / (
    "libs/vpbx-common/src/vpbx_common/phoneregion/data"
)
COUNTRY_ONLY = "RU"
NATIONAL_DIGITS = 10
ZONE_SIZE = 10**7  # numbers in one three-digit ABC/DEF code

# Geographic zone codes of the Russian numbering plan and the subject each one
# serves. Moscow's 495 and 499 also reach a few towns of Moscow Oblast; both map
# to Moscow, the main subject (the same rule as for register ranges naming
# "Moscow and Moscow Oblast"). Codes of territories without an ISO 3166-2:RU
# code (336 Baikonur, 365 Crimea, 869 Sevastopol, 856/857/860 and similar) are
# left out: their numbers fall back to the country.
ABC_ZONES: dict[str, str] = {
    "301": "RU-BU",
    "302": "RU-ZAB",
    "341": "RU-UD",
    "342": "RU-PER",
    "343": "RU-SVE",
    "345": "RU-TYU",
    "346": "RU-KHM",
    "347": "RU-BA",
    "349": "RU-YAN",
    "351": "RU-CHE",
    "352": "RU-KGN",
    "353": "RU-ORE",
    "381": "RU-OMS",
    "382": "RU-TOM",
    "383": "RU-NVS",
    "384": "RU-KEM",
    "385": "RU-ALT",
    "388": "RU-AL",
    "390": "RU-KK",
    "391": "RU-KYA",
    "394": "RU-TY",
    "395": "RU-IRK",
    "401": "RU-KGD",
    "411": "RU-SA",
    "413": "RU-MAG",
    "415": "RU-KAM",
    "416": "RU-AMU",
    "421": "RU-KHA",
    "423": "RU-PRI",
    "424": "RU-SAK",
    "426": "RU-YEV",
    "427": "RU-CHU",
    "471": "RU-KRS",
    "472": "RU-BEL",
    "473": "RU-VOR",
    "474": "RU-LIP",
    "475": "RU-TAM",
    "481": "RU-SMO",
    "482": "RU-TVE",
    "483": "RU-BRY",
    "484": "RU-KLU",
    "485": "RU-YAR",
    "486": "RU-ORL",
    "487": "RU-TUL",
    "491": "RU-RYA",
    "492": "RU-VLA",
    "493": "RU-IVA",
    "494": "RU-KOS",
    "495": "RU-MOW",
    "496": "RU-MOS",
    "498": "RU-MOS",
    "499": "RU-MOW",
    "811": "RU-PSK",
    "812": "RU-SPE",
    "813": "RU-LEN",
    "814": "RU-KR",
    "815": "RU-MUR",
    "816": "RU-NGR",
    "817": "RU-VLG",
    "818": "RU-ARK",
    "820": "RU-VLG",
    "821": "RU-KO",
    "831": "RU-NIZ",
    "833": "RU-KIR",
    "834": "RU-MO",
    "835": "RU-CU",
    "836": "RU-ME",
    "841": "RU-PNZ",
    "842": "RU-ULY",
    "843": "RU-TA",
    "844": "RU-VGG",
    "845": "RU-SAR",
    "846": "RU-SAM",
    "847": "RU-KL",
    "848": "RU-SAM",
    "851": "RU-AST",
    "855": "RU-TA",
    "861": "RU-KDA",
    "862": "RU-KDA",
    "863": "RU-ROS",
    "865": "RU-STA",
    "866": "RU-KB",
    "867": "RU-SE",
    "871": "RU-CE",
    "872": "RU-DA",
    "873": "RU-IN",
    "877": "RU-AD",
    "878": "RU-KC",
    "879": "RU-STA",
}
# Parts of a zone that serve another subject: the Nenets Autonomous Okrug is
# dialled inside Arkhangelsk's 818 (Naryan-Mar 818-53, Zapolyarny district 818-57).
ABC_SUBZONES: dict[str, str] = {
    "81853": "RU-NEN",
    "81857": "RU-NEN",
}

# Register names that deliberately map to no subject: the whole country or a
# group of subjects, and territories that ISO 3166-2:RU does not list.
_NOT_A_SUBJECT = re.compile(
    r"российская федерация|федеральн|регион|кроме|крым|севастопол|байконур"
    r"|донецк|луганск|запорожск|херсонск"
)
# Pairs of subjects that one range serves; the main one is the federal city or
# the larger subject (see README).
_MAIN_OF_PAIR: dict[frozenset[str], str] = {
    frozenset({"RU-MOW", "RU-MOS"}): "RU-MOW",
    frozenset({"RU-SPE", "RU-LEN"}): "RU-SPE",
    frozenset({"RU-ARK", "RU-NEN"}): "RU-ARK",
}
# Words that only say what kind of subject it is, or repeat its name.
_GENERIC_WORDS = frozenset(
    {
        "г",
        "город",
        "обл",
        "область",
        "край",
        "республика",
        "автономный",
        "автономная",
        "округ",
        "ао",
        "кузбасс",
        "югра",
        "чувашия",
        "якутия",
        "алания",
    }
)
# Former names still met in register extracts, and the subject that absorbed them.
_FORMER_NAMES: dict[str, str] = {
    "Читинская область": "RU-ZAB",
    "Агинский Бурятский автономный округ": "RU-ZAB",
    "Пермская область": "RU-PER",
    "Коми-Пермяцкий автономный округ": "RU-PER",
    "Камчатская область": "RU-KAM",
    "Корякский автономный округ": "RU-KAM",
    "Корякский округ": "RU-KAM",
    "Таймырский автономный округ": "RU-KYA",
    "Эвенкийский автономный округ": "RU-KYA",
    "Усть-Ордынский Бурятский автономный округ": "RU-IRK",
}


def name_key(name: str) -> str:
    """The words of a subject's name that tell it apart, in a canonical order.

    The register spells one subject many ways ("Кемеровская обл.", "Кемеровская
    область - Кузбасс", "Республика Удмуртская", "Удмуртская Республика",
    "Ханты - Мансийский - Югра АО"); all of them give one key.
    """
    text = name.lower().replace("ё", "е")
    text = re.sub(r"[^0-9a-zа-я]+", " ", text)
    return " ".join(sorted(word for word in text.split() if word not in _GENERIC_WORDS))


@dataclass(frozen=True, slots=True)
class NumberRange:
    """Numbers ``start``..``end`` (10-digit national, inclusive) of one region."""

    start: int
    end: int
    region: str


class SubjectNames:
    """Turns the register's region text into an ISO 3166-2:RU code, or ``RU``."""

    def __init__(self, subjects_tsv: Path) -> None:
        self._by_key: dict[str, str] = {}
        self.codes: set[str] = set()
        for row in _read_tsv(subjects_tsv):
            self._add(row["name_ru"], row["code"])
            self.codes.add(row["code"])
        for name, code in _FORMER_NAMES.items():
            self._add(name, code)
        self.unknown: set[str] = set()

    def _add(self, name: str, code: str) -> None:
        key = name_key(name)
        known = self._by_key.setdefault(key, code)
        if known != code:
            raise ValueError(f"{name!r} would name both {known} and {code}")

    def subject_of_one(self, name: str) -> str | None:
        """The code of one subject's name; None for a deliberate non-subject."""
        if _NOT_A_SUBJECT.search(name.lower()):
            return None
        code = self._by_key.get(name_key(name))
        if code is None:
            self.unknown.add(name)
        return code

    def region_of(self, text: str) -> str:
        """The region code of a register row's region text.

        The text is ``locality|district|subject`` (the subject last) and may name
        several subjects, separated by ``,``, ``*`` or `` и ``.
        """
        subject_part = text.split("|")[-1].strip()
        if not subject_part or subject_part == "-":
            return COUNTRY_ONLY
        if _NOT_A_SUBJECT.search(subject_part.lower()):
            return COUNTRY_ONLY
        names = [part for part in re.split(r",|\*| и ", subject_part) if part.strip()]
        codes = [self.subject_of_one(part.strip()) for part in names]
        if any(code is None for code in codes):
            return COUNTRY_ONLY
        distinct = list(dict.fromkeys(code for code in codes if code is not None))
        if len(distinct) == 1:
            return distinct[0]
        return _MAIN_OF_PAIR.get(frozenset(distinct), COUNTRY_ONLY)


def _read_tsv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        yield from csv.DictReader(lines, delimiter="\t")


def read_register(path: Path, names: SubjectNames) -> Iterator[NumberRange]:
    """Ranges of one register CSV (UTF-8, with or without BOM; or Windows-1251)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1251")
    rows = csv.reader(text.splitlines(), delimiter=";")
    header = [column.strip() for column in next(rows)]
    if header[:6] != ["АВС/ DEF", "От", "До", "Емкость", "Оператор", "Регион"]:
        raise ValueError(f"{path}: unexpected header {header}")
    # Newer extracts name the subject in "Территория ГАР" (normalised names); the
    # older "Регион" column is sometimes just "-" there.
    region_column = header.index("Территория ГАР") if "Территория ГАР" in header else 5
    for line_number, row in enumerate(rows, start=2):
        if not row or not row[0].strip():
            continue
        code = row[0].strip()
        if len(code) != 3 or not code.isdigit():
            raise ValueError(f"{path}:{line_number}: bad code {code!r}")
        if code.startswith("80"):
            continue  # toll-free, premium and other services: no region to give
        first, last = int(row[1]), int(row[2])
        if not 0 <= first <= last < ZONE_SIZE:
            raise ValueError(f"{path}:{line_number}: bad range {row[1]}..{row[2]}")
        base = int(code) * ZONE_SIZE
        region = names.region_of(row[region_column])
        yield NumberRange(base + first, base + last, region)


def zone_ranges(skip_first_digits: set[str]) -> Iterator[NumberRange]:
    """Whole geographic zones from the plan, split where a sub-zone differs."""
    for code, subject in ABC_ZONES.items():
        if code[0] in skip_first_digits:
            continue
        start, end = int(code) * ZONE_SIZE, (int(code) + 1) * ZONE_SIZE - 1
        for prefix, sub_subject in sorted(ABC_SUBZONES.items()):
            if not prefix.startswith(code):
                continue
            size = 10 ** (NATIONAL_DIGITS - len(prefix))
            sub_start = int(prefix) * size
            yield NumberRange(start, sub_start - 1, subject)
            yield NumberRange(sub_start, sub_start + size - 1, sub_subject)
            start = sub_start + size
        yield NumberRange(start, end, subject)


def merge(ranges: Iterable[NumberRange]) -> list[NumberRange]:
    """Sorted ranges, adjacent ones of one region joined; overlaps are an error."""
    merged: list[NumberRange] = []
    for current in sorted(ranges, key=lambda item: (item.start, item.end)):
        if merged and current.start <= merged[-1].end:
            previous = merged[-1]
            if current.region != previous.region or current.end > previous.end:
                raise ValueError(f"overlapping ranges: {previous} and {current}")
            continue  # the same numbers listed twice for one region
        if merged and merged[-1].end + 1 == current.start and merged[-1].region == current.region:
            merged[-1] = NumberRange(merged[-1].start, current.end, current.region)
        else:
            merged.append(current)
    return merged


def cross_check_with_phonenumbers(names: SubjectNames) -> list[str]:
    """Zones whose subject differs from phonenumbers' Russian geocoding names.

    A second, independent statement of the zone table: differences are printed
    for a person to judge (phonenumbers names 495 "Московская обл." and 496
    "г. Москва", the other way round from the plan).
    """
    try:
        from phonenumbers.geodata import GEOCODE_DATA
    except ImportError:
        return ["phonenumbers is not installed: zone table not cross-checked"]
    notes = []
    for prefix, descriptions in sorted(GEOCODE_DATA.items()):
        if not prefix.startswith("7") or prefix[1:2] not in ("3", "4", "8"):
            continue
        theirs_name = descriptions.get("ru", "")
        theirs = names.region_of(theirs_name) if theirs_name else None
        # A prefix shorter than a zone code ("740") speaks for every zone under it.
        zones = [code for code in ABC_ZONES if code.startswith(prefix[1:4])] or [prefix[1:4]]
        for zone in zones:
            ours = ABC_SUBZONES.get(prefix[1:6]) or ABC_ZONES.get(zone)
            if ours != theirs and not (ours is None and theirs == COUNTRY_ONLY):
                notes.append(f"+7{zone}: ours {ours}, phonenumbers {theirs_name!r} ({theirs})")
    names.unknown.clear()  # its spellings are not the register's
    return notes


def write_ranges(path: Path, ranges: list[NumberRange], sources: list[str]) -> None:
    lines = [
        "# Russian numbers (10-digit national, without the 7) -> ISO 3166-2:RU subject,"
        " or RU when the range names no single listed subject.",
        "# Generated by scripts/build-ru-numbering.py; see README.md. Do not edit by hand.",
        *(f"# source: {source}" for source in sources),
        "start\tend\tregion",
        *(f"{item.start:010d}\t{item.end:010d}\t{item.region}" for item in ranges),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--def-file", type=Path, required=True, help="DEF-9xx.csv")
    parser.add_argument(
        "--abc-file",
        type=Path,
        action="append",
        default=[],
        help="ABC-3xx.csv, ABC-4xx.csv or ABC-8xx.csv; codes without one come from the zone table",
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR / "ru_ranges.tsv")
    parser.add_argument("--subjects", type=Path, default=DATA_DIR / "subjects.tsv")
    arguments = parser.parse_args(argv)

    names = SubjectNames(arguments.subjects)
    unknown_zone_codes = {code for code in ABC_ZONES.values() if code not in names.codes}
    unknown_zone_codes |= {code for code in ABC_SUBZONES.values() if code not in names.codes}
    if unknown_zone_codes:
        raise SystemExit(f"zone table names codes missing from subjects: {unknown_zone_codes}")
    for note in cross_check_with_phonenumbers(names):
        print(f"cross-check: {note}", file=sys.stderr)

    ranges = list(read_register(arguments.def_file, names))
    sources = [f"register {arguments.def_file.name}"]
    abc_first_digits = set()
    for abc_file in arguments.abc_file:
        abc_ranges = list(read_register(abc_file, names))
        abc_first_digits |= {f"{item.start:010d}"[0] for item in abc_ranges}
        ranges += abc_ranges
        sources.append(f"register {abc_file.name}")
    zones = list(zone_ranges(abc_first_digits))
    if zones:
        covered = sorted({f"{item.start:010d}"[0] + "xx" for item in zones})
        sources.append(f"zone table of the numbering plan for ABC {', '.join(covered)}")
    ranges += zones

    if names.unknown:
        listed = "\n  ".join(sorted(names.unknown))
        raise SystemExit(
            f"register names not placed (add them to subjects.tsv or _FORMER_NAMES):\n  {listed}"
        )
    merged = merge(ranges)
    write_ranges(arguments.out, merged, sources)
    subjects = {item.region for item in merged} - {COUNTRY_ONLY}
    print(
        f"{len(ranges)} ranges read, {len(merged)} written to {arguments.out}; "
        f"{len(subjects)} subjects",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
